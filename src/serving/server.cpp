// The HTTP front of torchship serve: KServe v2 routes over cpp-httplib, API key, limits, JSON
// errors, metrics, graceful stop.
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <regex>
#include <thread>

#include "serving/content_encoding.h"
#include "serving/decode_slots.h"
#include "serving/kserve.h"
#include "serving/metrics.h"
#include "serving/repository.h"
#include "torchship/error.h"
#include "torchship/memory.h"
#include "torchship/serving.h"
#include "torchship/version.h"

namespace torchship::serving {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// A failure with its HTTP status, thrown by route handlers.
struct HttpError : std::runtime_error {
  HttpError(int status, const std::string& message) : std::runtime_error(message), status(status) {}
  int status;
};

void send_json(httplib::Response& response, int status, const json& body) {
  response.status = status;
  response.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace),
                       "application/json");
}

void send_error(httplib::Response& response, int status, const std::string& message) {
  send_json(response, status, {{"error", printable(message)}});  // URLs may carry any byte
}

// The server log: one write per record, so that records of concurrent requests never interleave.
void log_line(const std::string& text) {
  std::string line = "torchship: " + text + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

// What a client hears about a failure that is not its fault: one printable line, without the
// library's stack trace or source locations. The full text goes to the server log.
std::string internal_failure(const std::string& route, std::exception_ptr failure) {
  std::string full, brief;
  try {
    std::rethrow_exception(failure);
  } catch (const std::bad_alloc&) {
    full = brief = "out of memory";
  } catch (const std::exception& e) {  // c10::Error's brief leaves out its backtrace
    full = e.what();
    brief = first_line(e);
  } catch (...) {
    full = brief = "unknown failure";
  }
  log_line("error: " + route + ": internal error: " + printable(full, full.size()));
  return "internal error: " + printable(brief, 512);
}

// Where the pre-routing handler keeps a compressed body's Content-Encoding: httplib inflates
// any body whose request still names one, without a limit.
constexpr const char* kBodyEncoding = "X-Torchship-Content-Encoding";

// A refusal decided before the body was read ("401 message"), sent by the route after it.
constexpr const char* kRefusal = "X-Torchship-Refusal";

// Sends the request's refusal, if the pre-routing handler marked one.
bool send_refusal(const httplib::Request& request, httplib::Response& response) {
  if (!request.has_header(kRefusal)) return false;
  std::string refusal = request.get_header_value(kRefusal);
  int status = std::atoi(refusal.c_str());
  if (status == 401) response.set_header("WWW-Authenticate", "Bearer");
  send_error(response, status, refusal.substr(refusal.find(' ') + 1));
  return true;
}

// A route that first sends the request's refusal, if it has one.
httplib::Server::Handler guarded(httplib::Server::Handler handler) {
  return
      [handler = std::move(handler)](const httplib::Request& request, httplib::Response& response) {
        if (!send_refusal(request, response)) handler(request, response);
      };
}

// JSON bodies from this size on take many times their size while parsed.
constexpr size_t kLargeBody = size_t{1} << 20;

// The scratch memory of a decode goes back to the system when the decode ends, thrown or not.
struct DecodeScratch {
  explicit DecodeScratch(bool large) : large(large) {}
  ~DecodeScratch() {
    if (large) release_free_memory();
  }
  bool large;
};

int status_for(const Error& error) {
  switch (error.kind()) {
    case ErrorKind::BadInput:
      return 400;
    case ErrorKind::Unsupported:
      return 501;
    default:
      return 500;
  }
}

// Debian's compiled cpp-httplib listens with a backlog of 5: 32 clients connecting at once
// overflow it and wait for SYN retransmits (1 s, 3 s, ...). listen() again on the bound socket
// raises the backlog; the socket is found by its port, as httplib does not expose it.
void widen_listen_backlog(int port) {
  for (int fd = 3; fd < 1024; ++fd) {
    int listening = 0;
    socklen_t size = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || !listening) continue;
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) continue;
    int bound = address.ss_family == AF_INET
                    ? ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port)
                    : ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
    if (bound == port) ::listen(fd, SOMAXCONN);
  }
}

}  // namespace

struct Server::Impl {
  ServerOptions options;
  Metrics metrics;
  std::unique_ptr<Repository> repository;
  httplib::Server http;
  std::atomic<bool> draining{false};
  int bound_port = -1;
  DecodeSlots decode_slots;

  explicit Impl(ServerOptions opts)
      : options(std::move(opts)), decode_slots(options.max_concurrent_decodes) {
    repository = std::make_unique<Repository>(options.model_repository, options.load,
                                              options.threads_per_instance, metrics);
    configure();
  }

  ModelVersion& find(const std::string& name, const std::string& version) {
    if (ModelVersion* found = repository->find(name, version)) return *found;
    if (!repository->has_model(name)) throw HttpError(404, "unknown model '" + name + "'");
    std::string known;
    for (const auto& v : repository->versions_of(name)) known += (known.empty() ? "" : ", ") + v;
    throw HttpError(404,
                    "model '" + name + "' has no version " + version + " (it has " + known + ")");
  }

  Clock::time_point deadline_from(Clock::time_point started) const {
    if (options.request_timeout_ms <= 0) return Clock::time_point::max();
    return started + std::chrono::milliseconds(options.request_timeout_ms);
  }

  [[noreturn]] void deadline_passed(const std::string& what) const {
    throw HttpError(504, what + " within the request deadline of " +
                             std::to_string(options.request_timeout_ms) +
                             " ms (--request-timeout-ms)");
  }

  // The request's body, inflated (within --max-body-bytes) when it came compressed; `inflated`
  // holds the bytes then.
  std::string_view body_of(const httplib::Request& request, std::string& inflated) const {
    if (!request.has_header(kBodyEncoding)) return request.body;
    try {
      inflated = inflate_body(request.body, request.get_header_value(kBodyEncoding),
                              options.max_body_bytes);
    } catch (const BodyTooLarge&) {
      throw HttpError(413, "the request body inflates to more than " +
                               std::to_string(options.max_body_bytes) +
                               " bytes (--max-body-bytes)");
    }
    return inflated;
  }

  // A decode slot for this request, waiting no longer than its deadline.
  DecodeSlots::Held decode_slot(Clock::time_point deadline) {
    DecodeSlots::Held slot = decode_slots.acquire(deadline);
    if (!slot) deadline_passed("no decode slot came free");
    return slot;
  }

  // Runs one request through the model's batcher and waits for its rows until its deadline; a
  // forward still running then finishes for nobody, and the queue moves on.
  c10::IValue execute(ModelVersion& entry, std::vector<c10::IValue> arguments,
                      Clock::time_point deadline) {
    if (Clock::now() >= deadline) deadline_passed("the request was not decoded");
    try {
      auto result = entry.batcher->submit(std::move(arguments), deadline);
      if (deadline != Clock::time_point::max() &&
          result.wait_until(deadline) == std::future_status::timeout) {
        deadline_passed("model '" + entry.name + "' did not answer");
      }
      return result.get();
    } catch (const Unavailable& e) {
      throw HttpError(503, e.what());
    } catch (const DeadlineExceeded& e) {
      deadline_passed(std::string(e.what()) + ": model '" + entry.name + "' did not start it");
    }
  }

  // Wraps an inference route: status mapping, JSON errors, metrics.
  template <typename Handler>
  void inference(const httplib::Request& request, httplib::Response& response, Handler handler) {
    auto started = Clock::now();
    std::string name = request.matches.size() > 1 ? request.matches[1].str() : "";
    std::string version = request.matches.size() > 2 ? request.matches[2].str() : "";
    std::string model_label, version_label;
    try {
      ModelVersion& entry = find(name, version);
      model_label = entry.name;
      version_label = entry.version;
      handler(entry, deadline_from(started));
    } catch (const HttpError& e) {
      send_error(response, e.status, e.what());
    } catch (const Error& e) {
      int status = status_for(e);
      if (status >= 500)
        log_line("error: " + request.method + " " + request.path + ": " + e.what());
      send_error(response, status, e.what());
    } catch (...) {
      send_error(response, 500,
                 internal_failure(request.method + " " + request.path, std::current_exception()));
    }
    double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    metrics.request(model_label, version_label, response.status, seconds);
  }

  void infer(ModelVersion& entry, const httplib::Request& request, httplib::Response& response,
             Clock::time_point deadline) {
    std::string header_length;
    bool has_header = request.has_header("Inference-Header-Content-Length");
    if (has_header) header_length = request.get_header_value("Inference-Header-Content-Length");
    InferRequest parsed;
    std::vector<c10::IValue> arguments;
    {
      auto slot = decode_slot(deadline);
      DecodeScratch scratch(request.body.size() >= kLargeBody || request.has_header(kBodyEncoding));
      std::string inflated;
      parsed =
          parse_infer_request(body_of(request, inflated), has_header ? &header_length : nullptr);
      arguments = forward_arguments(*entry.model, std::move(parsed.inputs));
    }
    c10::IValue output = execute(entry, std::move(arguments), deadline);
    const auto& manifest = entry.model->manifest();
    HttpBody body = infer_response(entry.name, entry.version, parsed,
                                   named_outputs(output, manifest ? &*manifest : nullptr));
    if (body.json_length) {
      response.set_header("Inference-Header-Content-Length", std::to_string(*body.json_length));
    }
    response.status = 200;
    response.set_content(std::move(body.data), body.content_type.c_str());
  }

  void classify(ModelVersion& entry, const httplib::Request& request, httplib::Response& response,
                Clock::time_point deadline) {
    int k = 5;
    if (request.has_param("top_k")) {
      std::string text = request.get_param_value("top_k");
      char* end = nullptr;
      long value = std::strtol(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || value < 1 || value > 1000) {
        throw bad_input("top_k must be an integer from 1 to 1000, got \"" + text + "\"");
      }
      k = static_cast<int>(value);
    }
    const auto& manifest = entry.model->manifest();
    if (!manifest || manifest->task != "classification") {
      throw bad_input("model '" + entry.name + "' is not a classifier (its manifest task is " +
                      (manifest ? manifest->task : std::string("missing")) + "); use /infer");
    }
    if (request.body.empty()) {
      throw bad_input("expected the image file as the request body (PNG, JPEG, ...), got 0 bytes");
    }
    c10::IValue image;
    {
      auto slot = decode_slot(deadline);
      DecodeScratch scratch(true);  // a small file may decode to hundreds of megabytes
      std::string inflated;
      image =
          entry.model->image_input_from_bytes(body_of(request, inflated), 0, "the request body");
    }
    c10::IValue output = execute(entry, {image}, deadline);
    auto predictions = entry.model->top_k_rows(output, k).at(0);
    json list = json::array();
    for (const auto& p : predictions) {
      list.push_back({{"index", p.index}, {"label", p.label}, {"score", p.score}});
    }
    send_json(
        response, 200,
        {{"model_name", entry.name}, {"model_version", entry.version}, {"predictions", list}});
  }

  void configure() {
    http.new_task_queue = [threads = options.http_threads] {
      return new httplib::ThreadPool(static_cast<size_t>(std::max(1, threads)));
    };
    http.set_payload_max_length(options.max_body_bytes);
    http.set_read_timeout(options.read_timeout_s, 0);
    http.set_write_timeout(options.write_timeout_s, 0);
    http.set_keep_alive_max_count(100000);
    http.set_tcp_nodelay(true);  // headers and body go out as separate writes: no 40 ms Nagle stall

    http.set_pre_routing_handler([this](const httplib::Request& request, httplib::Response&) {
      // `curl --data-binary @photo.jpg` labels the body a form; httplib would then parse it as
      // one and refuse anything above 8 kB. No route here takes forms: drop the label.
      auto form = request.headers.find("Content-Type");
      auto& headers = const_cast<httplib::Request&>(request).headers;
      if (form != request.headers.end() &&
          form->second.rfind("application/x-www-form-urlencoded", 0) == 0) {
        headers.erase("Content-Type");
      }
      // This runs before httplib reads the body, and never answers itself: an answer now
      // would leave the body unread on a keep-alive connection, to be parsed as the next
      // request (behind a proxy, one client's answer would then reach another). A refusal
      // is marked here and sent by the route once the body is read (within the body limit).
      headers.erase(kRefusal);
      headers.erase(kBodyEncoding);
      auto refuse = [&](int status, const std::string& message) {
        headers.emplace(kRefusal, std::to_string(status) + " " + message);
      };
      // A compressed body is read as it came and inflated by the route within the body
      // limit: httplib's own inflation (gzip, deflate, brotli) has none.
      if (request.has_header("Content-Encoding")) {
        std::string encoding = request.get_header_value("Content-Encoding");
        headers.erase("Content-Encoding");
        if (accepted_encoding(encoding)) {
          headers.emplace(kBodyEncoding, encoding);
        } else {
          refuse(415, "Content-Encoding '" + encoding +
                          "' is not accepted (expected gzip, deflate or identity)");
        }
      }
      bool key_needed = !options.api_key.empty() && request.path.rfind("/v2/health/", 0) != 0;
      if (key_needed && request.get_header_value("Authorization") != "Bearer " + options.api_key) {
        refuse(401, "missing or wrong API key (expected the header Authorization: Bearer <key>)");
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    http.set_error_handler([this](const httplib::Request& request, httplib::Response& response) {
      if (!response.body.empty()) return;  // a route already explained itself
      if (send_refusal(request, response)) return;
      if (response.status == 413) {
        send_error(response, 413,
                   "the request body exceeds " + std::to_string(options.max_body_bytes) +
                       " bytes (--max-body-bytes)");
      } else if (response.status == 404) {
        send_error(response, 404,
                   "no route " + request.method + " " + request.path +
                       " (see docs/serving.md for the KServe v2 routes)");
      } else {
        send_error(response, response.status, "HTTP status " + std::to_string(response.status));
      }
    });
    http.set_exception_handler(
        [](const httplib::Request& request, httplib::Response& response, std::exception_ptr error) {
          send_error(response, 500, internal_failure(request.method + " " + request.path, error));
        });

    // Every route first sends a refusal the pre-routing handler marked (API key, encoding).
    auto get = [this](const std::string& path, httplib::Server::Handler handler) {
      http.Get(path, guarded(std::move(handler)));
    };
    auto post = [this](const std::string& path, httplib::Server::Handler handler) {
      http.Post(path, guarded(std::move(handler)));
    };
    get("/v2/health/live", [](const httplib::Request&, httplib::Response& response) {
      send_json(response, 200, {{"live", true}});
    });
    get("/v2/health/ready", [this](const httplib::Request&, httplib::Response& response) {
      bool ready = !draining.load();
      send_json(response, ready ? 200 : 503, {{"ready", ready}});
    });
    get("/v2", [](const httplib::Request&, httplib::Response& response) {
      send_json(response, 200,
                {{"name", "torchship"},
                 {"version", version()},
                 {"extensions", {"binary_tensor_data", "classify"}}});
    });
    get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
      response.set_content(metrics.prometheus(), "text/plain; version=0.0.4");
    });

    const std::string model = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)";
    get(model, [this](const httplib::Request& request, httplib::Response& response) {
      try {
        ModelVersion& entry = find(request.matches[1], request.matches[2]);
        std::vector<std::string> versions = request.matches[2].length() > 0
                                                ? std::vector<std::string>{entry.version}
                                                : repository->versions_of(entry.name);
        send_json(response, 200, model_metadata(entry.name, versions, *entry.model));
      } catch (const HttpError& e) {
        send_error(response, e.status, e.what());
      }
    });
    get(model + "/ready", [this](const httplib::Request& request, httplib::Response& response) {
      try {
        ModelVersion& entry = find(request.matches[1], request.matches[2]);
        bool ready = !draining.load();
        send_json(response, ready ? 200 : 503, {{"name", entry.name}, {"ready", ready}});
      } catch (const HttpError& e) {
        send_error(response, e.status, e.what());
      }
    });
    post(model + "/infer", [this](const httplib::Request& request, httplib::Response& response) {
      inference(request, response, [&](ModelVersion& entry, Clock::time_point deadline) {
        infer(entry, request, response, deadline);
      });
    });
    post(model + "/classify", [this](const httplib::Request& request, httplib::Response& response) {
      inference(request, response, [&](ModelVersion& entry, Clock::time_point deadline) {
        classify(entry, request, response, deadline);
      });
    });
  }
};

int default_decode_slots() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() {
  stop();
  impl_->repository->stop();
}

void Server::bind() {
  const auto& options = impl_->options;
  int port = options.port == 0
                 ? impl_->http.bind_to_any_port(options.host)
                 : (impl_->http.bind_to_port(options.host, options.port) ? options.port : -1);
  if (port < 0) {
    throw bad_input("cannot listen on " + options.host + ":" + std::to_string(options.port) +
                    " (address in use, or not an address of this machine)");
  }
  impl_->bound_port = port;
  widen_listen_backlog(port);
}

int Server::port() const {
  return impl_->bound_port;
}

void Server::serve() {
  if (impl_->bound_port < 0) bind();
  impl_->http.listen_after_bind();
  impl_->repository->stop();  // requests in flight have their answers; finish the queues
}

void Server::stop() {
  impl_->draining = true;
  if (impl_->http.is_running()) impl_->http.stop();
}

std::string Server::summary() const {
  std::string out;
  for (const auto& entry : impl_->repository->versions()) {
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
           (joined.empty() ? "" : " (" + joined + ")");
  }
  return std::to_string(impl_->repository->versions().size()) + " model version" +
         (impl_->repository->versions().size() == 1 ? "" : "s") + ": " + out;
}

}  // namespace torchship::serving
