// How torchship serve is configured: one struct the service and both fronts read.
#pragma once

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "serving/repository.h"
#include "torchship/model.h"

namespace torchship::serving {

// The CPUs this machine has (std::thread::hardware_concurrency), at least 1.
inline int default_decode_slots() {
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

struct ServerOptions {
  // Triton's layout: DIR/<model>/<version>/model.pt, optional DIR/<model>/config.json.
  std::filesystem::path model_repository;
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 8000;                 // 0: any free port (see Server::port())
  int grpc_port = -1;              // KServe v2 over gRPC; -1: none, 0: any free port
  std::string api_key;             // when set, every route but /v2/health/* needs
                                   // "Authorization: Bearer <key>"
  size_t max_body_bytes = size_t{64} << 20;
  int read_timeout_s = 30;   // a client that sends nothing for this long is disconnected
  int write_timeout_s = 30;  // a client that reads nothing for this long is disconnected
  // Total bounds on reading one HTTP request, however it trickles in (docs/security.md):
  // its header from its first byte, its body from the header's end. Past them: 408, closed.
  int header_timeout_ms = 30000;
  int body_timeout_ms = 120000;  // a 5 MB photo over a 0.5 Mbit/s uplink takes 84 s
  int http_threads = 64;         // connections served at once (keep-alive holds one each)
  // Requests decoded at once (JSON parsed, tensors built, images decoded): decoding is where a
  // request takes memory beyond its body, so this bounds the peak. Default: the CPUs there are.
  int max_concurrent_decodes = default_decode_slots();
  // A request not answered this long after it arrived gets 504; one still queued then is
  // dropped without running. 0: no deadline.
  int request_timeout_ms = 60000;
  LoadOptions load;  // how every model is loaded (optimization, warm-up)
  // Intra-op threads of each model instance's forwards. 0: the CPUs this process may use
  // (default_threads(), runtime.h) divided by the version's instances, at least 1 each.
  int threads_per_instance = 0;
  ModelControl model_control = ModelControl::None;
  std::vector<std::string> load_models;  // Explicit: loaded at start; "*" loads every model
  int repository_poll_secs = 15;         // Poll: seconds between rescans of the repository
};

}  // namespace torchship::serving
