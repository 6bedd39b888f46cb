// torchship serve: a KServe v2 / Triton-compatible HTTP server for a repository of archives.
// Protocol mapping and configuration: docs/serving.md.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "serving/server_options.h"

namespace torchship::serving {

// The protocols `serve` speaks in this build: "HTTP", and "gRPC" when built with gRPC++.
std::vector<std::string> protocols();

class Server {
 public:
  // Loads the model versions the control mode starts with; throws Error naming the first one
  // that fails.
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; throws Error when the address is taken or invalid.
  void bind();
  // The bound ports (useful with port 0); grpc_port() is -1 without gRPC.
  int port() const;
  int grpc_port() const;
  // Serves until stop(): blocks the calling thread.
  void serve();
  // Graceful stop, callable from any thread: stops accepting connections, reports not ready,
  // lets requests in flight finish, then serve() returns.
  void stop();

  // "loaded 3 model versions: fashion (1), ..." for the startup log.
  std::string summary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace torchship::serving
