#include "serving/grpc/grpc_front.h"

#include <grpc/support/log.h>
#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <limits>

#include <ATen/ATen.h>

#include "grpc_predict_v2.grpc.pb.h"
#include "serving/grpc/request_conversion.h"
#include "serving/service.h"
#include "torchship/error.h"
#include "torchship/limits.h"
#include "torchship/value_tree.h"
#include "torchship/version.h"

namespace torchship::serving {

namespace {

// The gRPC code of a status; docs/serving.md has the table.
grpc::StatusCode grpc_code(Status status) {
  switch (status) {
    case Status::Ok:
      return grpc::StatusCode::OK;
    case Status::InvalidArgument:
    case Status::UnsupportedEncoding:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case Status::Unauthenticated:
      return grpc::StatusCode::UNAUTHENTICATED;
    case Status::NotFound:
      return grpc::StatusCode::NOT_FOUND;
    case Status::Conflict:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case Status::PayloadTooLarge:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case Status::Unimplemented:
      return grpc::StatusCode::UNIMPLEMENTED;
    case Status::Unavailable:
      return grpc::StatusCode::UNAVAILABLE;
    case Status::DeadlineExceeded:
      return grpc::StatusCode::DEADLINE_EXCEEDED;
    case Status::Internal:
      return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::INTERNAL;
}

using inference::ModelInferRequest;
using inference::ModelInferResponse;

// The client's deadline, if it set one, on the steady clock.
Clock::time_point client_deadline(const grpc::ServerContext& context) {
  auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return Clock::time_point::max();
  auto left = deadline - std::chrono::system_clock::now();
  if (left > std::chrono::hours(24 * 365)) return Clock::time_point::max();
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(left);
}

grpc::Status grpc_status(const Outcome& outcome) {
  return grpc::Status(grpc_code(outcome.status), outcome.message);
}

class Service final : public inference::GRPCInferenceService::Service {
 public:
  explicit Service(InferenceService& service) : service_(service) {}

  grpc::Status ServerLive(grpc::ServerContext*, const inference::ServerLiveRequest*,
                          inference::ServerLiveResponse* response) override {
    response->set_live(true);
    return grpc::Status::OK;
  }

  grpc::Status ServerReady(grpc::ServerContext*, const inference::ServerReadyRequest*,
                           inference::ServerReadyResponse* response) override {
    response->set_ready(service_.ready());
    return grpc::Status::OK;
  }

  grpc::Status ModelReady(grpc::ServerContext* context, const inference::ModelReadyRequest* request,
                          inference::ModelReadyResponse* response) override {
    return answer(context, "ModelReady", [&] {
      // KServe: HTTP says "not ready" with a 4xx status, gRPC with ready = false.
      try {
        service_.find(request->name(), request->version());
        response->set_ready(service_.ready());
      } catch (const ServingError& e) {
        if (e.status != Status::NotFound) throw;
        response->set_ready(false);
      }
    });
  }

  grpc::Status ServerMetadata(grpc::ServerContext* context, const inference::ServerMetadataRequest*,
                              inference::ServerMetadataResponse* response) override {
    return answer(context, "ServerMetadata", [&] {
      response->set_name("torchship");
      response->set_version(version());
      for (const auto& extension : service_.extensions()) response->add_extensions(extension);
    });
  }

  grpc::Status ModelMetadata(grpc::ServerContext* context,
                             const inference::ModelMetadataRequest* request,
                             inference::ModelMetadataResponse* response) override {
    return answer(context, "ModelMetadata", [&] {
      serving::ModelMetadata metadata =
          service_.model_metadata(request->name(), request->version());
      response->set_name(metadata.name);
      for (const auto& v : metadata.versions) response->add_versions(v);
      response->set_platform(metadata.platform);
      auto add = [](const TensorMetadata& spec, auto* tensor) {
        tensor->set_name(spec.name);
        tensor->set_datatype(spec.datatype);
        for (int64_t size : spec.shape) tensor->add_shape(size);
      };
      for (const auto& spec : metadata.inputs) add(spec, response->add_inputs());
      for (const auto& spec : metadata.outputs) add(spec, response->add_outputs());
    });
  }

  grpc::Status ModelInfer(grpc::ServerContext* context, const ModelInferRequest* request,
                          ModelInferResponse* response) override {
    auto started = Clock::now();
    std::string model_label, version_label;
    Outcome outcome = attempt(context, "ModelInfer", [&] {
      auto entry = service_.find(request->model_name(), request->model_version());
      model_label = entry->name;
      version_label = entry->version;
      Clock::time_point deadline = service_.deadline_from(started, client_deadline(*context));
      InferRequest parsed;
      {
        auto decoding = service_.begin_decode(deadline, /*large=*/false);
        parsed = request_from_proto(*request);
      }
      auto outputs = service_.infer(*entry, parsed, deadline);
      response_from_outputs(*entry, *request, outputs, *response);
    });
    double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    service_.metrics().request(model_label, version_label, "grpc", outcome.status, seconds);
    return grpc_status(outcome);
  }

  grpc::Status RepositoryIndex(grpc::ServerContext* context,
                               const inference::RepositoryIndexRequest* request,
                               inference::RepositoryIndexResponse* response) override {
    return answer(context, "RepositoryIndex", [&] {
      check_repository_name(request->repository_name());
      for (const auto& entry : service_.repository().index(request->ready())) {
        auto* model = response->add_models();
        model->set_name(entry.name);
        model->set_version(entry.version);
        model->set_state(entry.state);
        model->set_reason(entry.reason);
      }
    });
  }

  grpc::Status RepositoryModelLoad(grpc::ServerContext* context,
                                   const inference::RepositoryModelLoadRequest* request,
                                   inference::RepositoryModelLoadResponse*) override {
    return answer(context, "RepositoryModelLoad", [&] {
      check_repository_name(request->repository_name());
      service_.control(request->model_name(), /*load=*/true, parameter_names(*request));
    });
  }

  grpc::Status RepositoryModelUnload(grpc::ServerContext* context,
                                     const inference::RepositoryModelUnloadRequest* request,
                                     inference::RepositoryModelUnloadResponse*) override {
    return answer(context, "RepositoryModelUnload", [&] {
      check_repository_name(request->repository_name());
      service_.control(request->model_name(), /*load=*/false, parameter_names(*request));
    });
  }

 private:
  // The API key (metadata "authorization: Bearer <key>"), then the handler: how it went.
  template <typename Handler>
  Outcome attempt(grpc::ServerContext* context, const char* method, Handler handler) {
    const auto& metadata = context->client_metadata();
    auto key = metadata.find("authorization");
    std::string authorization =
        key == metadata.end() ? "" : std::string(key->second.data(), key->second.size());
    if (!service_.authorized(authorization)) {
      return {Status::Unauthenticated,
              "missing or wrong API key (expected the metadata authorization: Bearer <key>)"};
    }
    try {
      handler();
      return {Status::Ok, ""};
    } catch (...) {
      return service_.outcome_of(std::current_exception(), std::string("gRPC ") + method);
    }
  }

  // attempt()'s outcome as the gRPC status that answers the call.
  template <typename Handler>
  grpc::Status answer(grpc::ServerContext* context, const char* method, Handler handler) {
    return grpc_status(attempt(context, method, std::move(handler)));
  }

  template <typename Request>
  static std::vector<std::string> parameter_names(const Request& request) {
    std::vector<std::string> names;
    for (const auto& parameter : request.parameters()) names.push_back(parameter.first);
    return names;
  }

  static void check_repository_name(const std::string& name) {
    if (!name.empty()) {
      throw bad_input("repository '" + name +
                      "' is unknown (this server has one repository: leave the name empty)");
    }
  }

  InferenceService& service_;
};

// gRPC's own log, as one printable line per error in the server's log; its notes and
// debugging output are dropped.
void log_grpc(gpr_log_func_args* args) {
  if (args->severity != GPR_LOG_SEVERITY_ERROR) return;
  log_line("grpc: " + printable(args->message, 300));
}

// Whether host:port can be bound now: gRPC reports a failed bind only in its log, in several
// hundred characters, so the common mistake (a port in use) is caught here first.
bool can_bind(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return false;
  bool bound = false;
  for (addrinfo* a = found; a && !bound; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    bound = ::bind(fd, a->ai_addr, a->ai_addrlen) == 0;
    close(fd);
  }
  freeaddrinfo(found);
  return bound;
}

}  // namespace

struct GrpcFront::Impl {
  explicit Impl(InferenceService& service) : service(service), rpc(service) {}
  InferenceService& service;
  Service rpc;
  std::unique_ptr<grpc::Server> server;
};

GrpcFront::GrpcFront(InferenceService& service) : impl_(std::make_unique<Impl>(service)) {}

GrpcFront::~GrpcFront() {
  stop();
}

int GrpcFront::start(const std::string& host, int port) {
  const ServerOptions& options = impl_->service.options();
  gpr_set_log_function(log_grpc);
  std::string address =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  if (port != 0 && !can_bind(host, port)) {
    throw bad_input("cannot listen for gRPC on " + address +
                    " (address in use, or not an address of this machine)");
  }
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound);
  // gRPC binds with SO_REUSEPORT by default: it would then share a port already in use (by
  // another server, or this one's HTTP side), and the kernel would split the connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(&impl_->rpc);
  // A message is a request body: the same limit (gRPC answers RESOURCE_EXHAUSTED beyond it).
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<size_t>(options.max_body_bytes, std::numeric_limits<int>::max())));
  builder.SetMaxSendMessageSize(-1);
  // Each call in flight holds a thread of the synchronous server: bound them as HTTP's
  // connections are (calls beyond get RESOURCE_EXHAUSTED).
  int max_threads = std::max(4, options.http_threads + 4);
  grpc::ResourceQuota quota("torchship-grpc");
  quota.SetMaxThreads(max_threads);
  builder.SetResourceQuota(quota);
  // Threads that finish a call stay to poll for the next one, up to the limit: with the default
  // (2 pollers), 32 concurrent clients had a thread created and destroyed for most calls.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, max_threads);
  // An idle connection is pinged, and one that stays silent is dropped (--timeout).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  // A 600 KB image tensor in HTTP/2's default 64 KB window waits for several window updates.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 4 << 20);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, options.read_timeout_s * 1000);
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || bound == 0) {
    throw bad_input("cannot listen for gRPC on " + address +
                    " (address in use, or not an address of this machine)");
  }
  return bound;
}

void GrpcFront::stop() {
  if (!impl_->server) return;
  // Calls in flight get this long to finish; their own deadlines are usually shorter.
  int grace_ms = std::max(30000, impl_->service.options().request_timeout_ms + 5000);
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(grace_ms));
  impl_->server->Wait();
  impl_->server.reset();
}

}  // namespace torchship::serving
