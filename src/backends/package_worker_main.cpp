// The worker's side of package_worker.h: serve_package_worker (torchship/runtime.h).
#include <csignal>
#include <cstring>
#include <iostream>
#include <new>
#include <thread>

#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include "backends/compiled_package.h"
#include "backends/worker_channel.h"
#include "platform/device.h"
#include "torchship/error.h"
#include "torchship/memory.h"
#include "torchship/runtime.h"

namespace torchship {

namespace {

using backends::ChannelClosed;
using backends::FrameKind;
using backends::WorkerChannel;

// What torchship sends a worker is its own: no limit beyond a sane one.
constexpr uint64_t kMaxRequestBytes = uint64_t(1) << 40;

std::string failure_json(const std::exception& error) {
  nlohmann::json failure;
  auto* own = dynamic_cast<const Error*>(&error);
  failure["kind"] = own ? static_cast<int>(own->kind()) : -1;
  // (bad_alloc's text says nothing; the backend recognizes these words)
  failure["message"] =
      dynamic_cast<const std::bad_alloc*>(&error) ? "out of memory" : printable(first_line(error));
  return failure.dump();
}

// Opens the package whose bytes come first on `channel`, and says so: the call spec and summary,
// or what failed.
std::unique_ptr<backends::CompiledPackage> open_sent_package(WorkerChannel& channel,
                                                             const c10::Device& device,
                                                             int channels) {
  backends::Frame frame = channel.receive(kMaxRequestBytes);
  uint32_t name_size = 0;
  if (frame.kind != FrameKind::Archive || frame.payload.size() < sizeof(name_size)) {
    throw internal_error("a package worker's first frame is not a package");
  }
  std::memcpy(&name_size, frame.payload.data(), sizeof(name_size));
  std::string_view rest(frame.payload);
  rest.remove_prefix(sizeof(name_size));
  if (name_size > rest.size()) throw internal_error("a package worker's package is malformed");
  std::string name(rest.substr(0, name_size));
  std::unique_ptr<backends::CompiledPackage> package;
  {
    Archive archive = Archive::from_bytes(rest.substr(name_size), name);
    frame = {};  // the archive holds its own copy
    package = backends::open_compiled_package(archive, device, channels);
  }
  nlohmann::json ready;
  ready["inputs"] = package->call_spec().inputs;
  ready["outputs"] = package->call_spec().outputs;
  ready["parameter_count"] = package->summary().parameter_count;
  ready["parameter_bytes"] = package->summary().parameter_bytes;
  channel.send(FrameKind::Ready, ready.dump());
  return package;
}

// Runs each request that comes on `channel` until torchship closes it.
void serve_channel(WorkerChannel& channel, const backends::CompiledPackage& package) {
  c10::InferenceMode guard;
  for (;;) {
    backends::Frame request;
    try {
      request = channel.receive(kMaxRequestBytes);
    } catch (const std::exception&) {
      return;  // closed (the model freed, torchship ended) or not torchship's
    }
    if (request.kind != FrameKind::Run) return;
    FrameKind kind = FrameKind::Outputs;
    std::string answer;
    try {
      int model = -1;
      auto inputs = backends::decode_tensors(request.payload, model);
      request = {};
      answer = backends::encode_tensors(-1, package.run(model, std::move(inputs)));
    } catch (const std::exception& e) {
      kind = FrameKind::Failure;
      answer = failure_json(e);
    } catch (...) {
      kind = FrameKind::Failure;
      answer = failure_json(internal_error("the compiled model failed (not a C++ exception)"));
    }
    try {
      channel.send(kind, answer);
    } catch (const ChannelClosed&) {
      return;
    }
  }
}

}  // namespace

int serve_package_worker(int channels, const std::string& device_name, int threads) {
#ifdef _WIN32
  (void)channels, (void)device_name, (void)threads;
  std::cerr << "torchship package-worker: package workers run on POSIX systems, not Windows\n";
  return 2;
#else
  if (channels < 1 || channels > 1024 || threads < 0) {
    std::cerr << "torchship package-worker: 1 to 1024 channels and threads >= 0 expected, got "
              << channels << " and " << threads << "\n";
    return 2;
  }
  // Ctrl-C at a terminal and a service manager's stop signal the whole group: the server
  // finishes its requests, in its workers too, then closes the channels, which ends them.
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGTERM, SIG_IGN);
  std::vector<std::unique_ptr<WorkerChannel> > all;
  for (int i = 0; i < channels; ++i) {
    fcntl(3 + i, F_SETFD, FD_CLOEXEC);  // not to what the worker's libraries may start
    all.push_back(std::make_unique<WorkerChannel>(3 + i));
  }
  std::unique_ptr<backends::CompiledPackage> package;
  try {
    configure_runtime(RuntimeOptions().with_threads(threads));
    package = open_sent_package(*all.front(), parse_device(device_name), channels);
    release_free_memory();  // the package's bytes as sent, and the load's own
  } catch (const ChannelClosed&) {
    return 0;  // torchship went away first
  } catch (const std::exception& e) {
    try {
      all.front()->send(FrameKind::Failure, failure_json(e));
    } catch (const std::exception&) {
    }
    return 0;
  }
  // A channel that closes (torchship freed the model, or ended) or carries what torchship does
  // not send ends the worker: torchship reads the end on every channel.
  for (int i = 1; i < channels; ++i) {
    std::thread([&channel = *all[i], &package = *package] {
      serve_channel(channel, package);
      _exit(0);
    }).detach();
  }
  serve_channel(*all.front(), *package);
  _exit(0);  // with the other channels' threads running: nothing to destroy under them
#endif
}

}  // namespace torchship
