// torchship serve: the shared InferenceService behind an HTTP front and, when asked, a gRPC one;
// in poll mode a thread that rescans the repository.
#include <condition_variable>
#include <mutex>
#include <thread>

#include "serving/http/http_front.h"
#include "serving/server.h"
#include "serving/service.h"
#include "torchship/error.h"
#ifdef TORCHSHIP_GRPC
#include "serving/grpc/grpc_front.h"
#endif

namespace torchship::serving {

std::vector<std::string> protocols() {
#ifdef TORCHSHIP_GRPC
  return {"HTTP", "gRPC"};
#else
  return {"HTTP"};
#endif
}

struct Server::Impl {
  InferenceService service;
  HttpFront http;
#ifdef TORCHSHIP_GRPC
  std::unique_ptr<GrpcFront> grpc;
#endif
  int http_port = -1;
  int grpc_port = -1;

  std::mutex poll_mutex;
  std::condition_variable poll_wakeup;
  bool stopping = false;

  explicit Impl(ServerOptions options) : service(std::move(options)), http(service) {}

  void stop_polling() {
    {
      std::lock_guard<std::mutex> lock(poll_mutex);
      stopping = true;
    }
    poll_wakeup.notify_all();
  }

  // Rescans the repository every --repository-poll-secs until the server stops.
  void poll_repository() {
    auto period = std::chrono::seconds(std::max(1, service.options().repository_poll_secs));
    std::unique_lock<std::mutex> lock(poll_mutex);
    while (!poll_wakeup.wait_for(lock, period, [this] { return stopping; })) {
      lock.unlock();
      try {
        service.repository().poll();
      } catch (const std::exception& e) {  // a scan that fails is retried at the next one
        log_line("error: polling the repository: " + first_line(e));
      }
      lock.lock();
    }
  }
};

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() {
  stop();
  impl_->service.repository().stop();
}

void Server::bind() {
  const auto& options = impl_->service.options();
  impl_->http_port = impl_->http.bind(options.host, options.port);
  if (options.grpc_port < 0) return;
  if (options.grpc_port == impl_->http_port) {
    throw bad_input("--grpc-port " + std::to_string(options.grpc_port) +
                    " is the HTTP port (--port): give gRPC a port of its own");
  }
#ifdef TORCHSHIP_GRPC
  impl_->grpc = std::make_unique<GrpcFront>(impl_->service);
  impl_->grpc_port = impl_->grpc->start(options.host, options.grpc_port);
#else
  throw unsupported(
      "--grpc-port: this build of torchship has no gRPC (configure it with gRPC++ "
      "and protobuf installed, see docs/serving.md)");
#endif
}

int Server::port() const {
  return impl_->http_port;
}

int Server::grpc_port() const {
  return impl_->grpc_port;
}

void Server::serve() {
  if (impl_->http_port < 0) bind();
  std::thread poller;
  if (impl_->service.options().model_control == ModelControl::Poll) {
    poller = std::thread([this] { impl_->poll_repository(); });
  }
  impl_->http.serve();
  // stop() was called: HTTP requests in flight have their answers. The gRPC ones finish next,
  // then the queues.
#ifdef TORCHSHIP_GRPC
  if (impl_->grpc) impl_->grpc->stop();
#endif
  impl_->stop_polling();
  if (poller.joinable()) poller.join();
  impl_->service.repository().stop();
}

void Server::stop() {
  impl_->service.drain();
  impl_->http.stop();
  impl_->stop_polling();
}

std::string Server::summary() const {
  std::string out;
  auto loaded = impl_->service.repository().loaded();
  for (const auto& entry : loaded) {
    const auto& policy = entry->batcher->policy();
    std::vector<std::string> details;
    if (policy.max_batch_size > 0) {
      details.push_back("batches up to " + std::to_string(policy.max_batch_size));
    }
    if (policy.instances > 1) {
      details.push_back(std::to_string(policy.instances) + " instances, " +
                        std::to_string(policy.threads) + " thread" +
                        (policy.threads == 1 ? "" : "s") + " each");
    }
    std::string joined;
    for (const auto& detail : details) joined += (joined.empty() ? "" : "; ") + detail;
    out += (out.empty() ? "" : ", ") + entry->name + " v" + entry->version +
           (joined.empty() ? "" : " (" + joined + ")") + engine_chosen(*entry->model);
  }
  return std::to_string(loaded.size()) + " model version" + (loaded.size() == 1 ? "" : "s") +
         (loaded.empty() ? "" : ": " + out);
}

}  // namespace torchship::serving
