// The HTTP front of torchship serve: KServe v2 routes over cpp-httplib, the repository
// extension, API key, limits, JSON errors, metrics, graceful stop.
#include "serving/http/http_front.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <regex>
#include <thread>

#include "serving/http/content_encoding.h"
#include "serving/http/deadline_server.h"
#include "serving/http/kserve_json.h"
#include "serving/http_status.h"
#include "serving/service.h"
#include "torchship/classification_output.h"
#include "torchship/detection_output.h"
#include "torchship/error.h"
#include "torchship/version.h"

namespace torchship::serving {
namespace {

using nlohmann::json;

void send_json(httplib::Response& response, int status, const json& body) {
  response.status = status;
  response.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace),
                       "application/json");
}

void send_error(httplib::Response& response, int status, const std::string& message) {
  send_json(response, status, {{"error", printable(message)}});  // URLs may carry any byte
}

void send_outcome(httplib::Response& response, const Outcome& outcome) {
  if (outcome.status == Status::Unauthenticated) response.set_header("WWW-Authenticate", "Bearer");
  send_error(response, http_status(outcome.status), outcome.message);
}

// Sends the refusal the pre-routing handler decided for this request, if it decided one.
bool send_refusal(httplib::Response& response) {
  const auto& refusal = DeadlineServer::screening_of_this_request().refusal;
  if (!refusal) return false;
  send_outcome(response, *refusal);
  return true;
}

// A route that first sends the request's refusal, if it has one.
httplib::Server::Handler unless_refused(httplib::Server::Handler handler) {
  return
      [handler = std::move(handler)](const httplib::Request& request, httplib::Response& response) {
        if (!send_refusal(response)) handler(request, response);
      };
}

// A compressed body's Content-Encoding, "" for a body that came as it is.
const std::string& body_encoding() {
  return DeadlineServer::screening_of_this_request().body_encoding;
}

// JSON bodies from this size on take many times their size while parsed.
constexpr size_t kLargeBody = size_t{1} << 20;

// The top_k query parameter of /classify: 5 when absent.
int top_k_parameter(const httplib::Request& request) {
  if (!request.has_param("top_k")) return 5;
  std::string text = request.get_param_value("top_k");
  char* end = nullptr;
  long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < 1 || value > 1000) {
    throw bad_input("top_k must be an integer from 1 to 1000, got \"" + text + "\"");
  }
  return static_cast<int>(value);
}

// The min_score query parameter of /detect: 0 (every object the model returns) when absent.
double min_score_parameter(const httplib::Request& request) {
  if (!request.has_param("min_score")) return 0;
  std::string text = request.get_param_value("min_score");
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(value)) {
    throw bad_input("min_score must be a number, got \"" + text + "\"");
  }
  return value;
}

// The "ready" flag of a repository index request: {"ready": true|false}, or no body.
bool ready_only_parameter(const std::string& text) {
  if (text.empty()) return false;
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object())
    throw bad_input("expected the index request {\"ready\": true|false} or no body");
  auto ready = body.find("ready");
  if (ready == body.end()) return false;
  if (!ready->is_boolean())
    throw bad_input("\"ready\" must be true or false, got " + ready->dump());
  return ready->get<bool>();
}

// The parameter names of a load or unload body: none, or {"parameters": {...}}.
std::vector<std::string> control_parameters(const std::string& text) {
  std::vector<std::string> names;
  if (text.empty()) return names;
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) throw bad_input("expected {\"parameters\": {...}} or no body");
  auto parameters = body.find("parameters");
  if (parameters == body.end()) return names;
  if (!parameters->is_object()) throw bad_input("\"parameters\" must be an object");
  for (const auto& item : parameters->items()) names.push_back(item.key());
  return names;
}

}  // namespace

struct HttpFront::Impl {
  InferenceService& service;
  const ServerOptions& options;
  DeadlineServer http;
  int bound_port = -1;
  std::mutex lifecycle;  // orders serve() and stop()
  bool serving = false, stop_requested = false;
  std::atomic<bool> listen_returned{false};

  explicit Impl(InferenceService& service)
      : service(service),
        options(service.options()),
        http(RequestDeadlines{std::chrono::milliseconds(options.header_timeout_ms),
                              std::chrono::milliseconds(options.body_timeout_ms)},
             [&service](const ReadTimeout& timeout) {
               service.metrics().read_timeout(timeout.part);
               log_line("closed the connection from " + timeout.client +
                        " with 408: " + timeout.message);
             }) {
    configure_transport();
    screen_requests_before_their_body();
    explain_what_no_route_answered();
    register_server_routes();
    register_model_routes();
    register_repository_routes();
  }

  // A compressed body inflated, within --max-body-bytes.
  std::string inflated(std::string_view body, const std::string& encoding) const {
    try {
      return inflate_body(body, encoding, options.max_body_bytes);
    } catch (const BodyTooLarge&) {
      throw ServingError(Status::PayloadTooLarge, "the request body inflates to more than " +
                                                      std::to_string(options.max_body_bytes) +
                                                      " bytes (--max-body-bytes)");
    }
  }

  // The request's body, inflated when it came compressed; `inflated_body` holds the bytes then.
  std::string_view body_of(const httplib::Request& request, std::string& inflated_body) const {
    if (body_encoding().empty()) return request.body;
    inflated_body = inflated(request.body, body_encoding());
    return inflated_body;
  }

  // Runs a handler for a route on a model: its failure as the JSON error answer, metrics.
  template <typename Handler>
  void on_model(const httplib::Request& request, httplib::Response& response, bool counted,
                Handler handler) {
    auto started = Clock::now();
    std::string name = request.matches.size() > 1 ? request.matches[1].str() : "";
    std::string version = request.matches.size() > 2 ? request.matches[2].str() : "";
    std::string model_label, version_label;
    Outcome outcome = on_request(request, response, [&] {
      std::shared_ptr<ModelVersion> entry = service.find(name, version);  // held to the answer
      model_label = entry->name;
      version_label = entry->version;
      handler(*entry, service.deadline_from(started));
    });
    if (!counted) return;
    double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    service.metrics().request(model_label, version_label, "http", outcome.status, seconds);
  }

  // Runs a route's handler: its failure as the JSON error answer.
  template <typename Handler>
  Outcome on_request(const httplib::Request& request, httplib::Response& response,
                     Handler handler) {
    try {
      handler();
      return {};
    } catch (...) {
      Outcome outcome =
          service.outcome_of(std::current_exception(), request.method + " " + request.path);
      send_outcome(response, outcome);
      return outcome;
    }
  }

  void infer(ModelVersion& entry, const httplib::Request& request, httplib::Response& response,
             Clock::time_point deadline) {
    std::string header_length;
    bool has_header = request.has_header("Inference-Header-Content-Length");
    if (has_header) header_length = request.get_header_value("Inference-Header-Content-Length");
    JsonInferRequest parsed;
    {
      auto decoding = service.begin_decode(
          deadline, request.body.size() >= kLargeBody || !body_encoding().empty());
      std::string inflated;
      parsed =
          parse_infer_request(body_of(request, inflated), has_header ? &header_length : nullptr);
    }
    auto outputs = service.infer(entry, parsed, deadline);
    HttpBody body = infer_response(entry.name, entry.version, parsed.id, outputs);
    if (body.json_length) {
      response.set_header("Inference-Header-Content-Length", std::to_string(*body.json_length));
    }
    response.status = 200;
    response.set_content(std::move(body.data), body.content_type.c_str());
  }

  // The image a request's body carries, inflated on demand when it comes compressed.
  InferenceService::EncodedImage encoded_image(const httplib::Request& request) {
    InferenceService::EncodedImage image{request.body, nullptr, "the request body"};
    if (!body_encoding().empty()) {
      image.inflate = [this, encoding = body_encoding()](std::string_view body) {
        return inflated(body, encoding);
      };
    }
    return image;
  }

  void classify(ModelVersion& entry, const httplib::Request& request, httplib::Response& response,
                Clock::time_point deadline) {
    int k = top_k_parameter(request);
    auto predictions = service.classify(entry, k, encoded_image(request), deadline);
    json list = json::array();
    for (const auto& prediction : predictions) list.push_back(prediction_json(prediction));
    send_json(
        response, 200,
        {{"model_name", entry.name}, {"model_version", entry.version}, {"predictions", list}});
  }

  void detect(ModelVersion& entry, const httplib::Request& request, httplib::Response& response,
              Clock::time_point deadline) {
    double min_score = min_score_parameter(request);
    json list = json::array();
    for (const auto& detection :
         service.detect(entry, min_score, encoded_image(request), deadline)) {
      list.push_back(detection_json(detection));
    }
    send_json(response, 200,
              {{"model_name", entry.name}, {"model_version", entry.version}, {"detections", list}});
  }

  // Every route first sends a refusal the pre-routing handler marked (API key, encoding).
  void get(const std::string& path, httplib::Server::Handler handler) {
    http.Get(path, unless_refused(std::move(handler)));
  }
  void post(const std::string& path, httplib::Server::Handler handler) {
    http.Post(path, unless_refused(std::move(handler)));
  }

  void configure_transport() {
    http.new_task_queue = [threads = options.http_threads] {
      return new httplib::ThreadPool(static_cast<size_t>(std::max(1, threads)));
    };
    http.set_payload_max_length(options.max_body_bytes);
    http.set_read_timeout(options.read_timeout_s, 0);
    http.set_write_timeout(options.write_timeout_s, 0);
    http.set_keep_alive_max_count(100000);
    http.set_tcp_nodelay(true);  // headers and body go out as separate writes: no 40 ms Nagle stall
  }

  // This runs before httplib reads the body, and never answers itself: an answer now would
  // leave the body unread on a keep-alive connection, to be parsed as the next request (behind
  // a proxy, one client's answer would then reach another). A refusal is kept in the request's
  // screening and sent by the route once the body is read (within the body limit).
  void screen_requests_before_their_body() {
    http.set_pre_routing_handler([this](const httplib::Request& request, httplib::Response&) {
      DeadlineServer::header_read();
      // `curl --data-binary @photo.jpg` labels the body a form; httplib would then parse it as
      // one and refuse anything above 8 kB. No route here takes forms: drop the label.
      auto form = request.headers.find("Content-Type");
      auto& headers = const_cast<httplib::Request&>(request).headers;
      if (form != request.headers.end() &&
          form->second.rfind("application/x-www-form-urlencoded", 0) == 0) {
        headers.erase("Content-Type");
      }
      Screening& screening = DeadlineServer::screening_of_this_request();
      auto refuse = [&](Status status, const std::string& message) {
        if (!screening.refusal) screening.refusal = Outcome{status, message};  // the first found
      };
      // A compressed body is read as it came and inflated by the route within the body
      // limit: httplib's own inflation (gzip, deflate, brotli) has none, and inflates any body
      // whose request still names an encoding.
      if (request.has_header("Content-Encoding")) {
        std::string encoding = request.get_header_value("Content-Encoding");
        headers.erase("Content-Encoding");
        if (accepted_encoding(encoding)) {
          screening.body_encoding = encoding;
        } else {
          refuse(Status::UnsupportedEncoding,
                 "Content-Encoding '" + encoding +
                     "' is not accepted (expected gzip, deflate or identity)");
        }
      }
      bool key_needed = request.path.rfind("/v2/health/", 0) != 0;
      if (key_needed && !service.authorized(request.get_header_value("Authorization"))) {
        refuse(Status::Unauthenticated,
               "missing or wrong API key (expected the header Authorization: Bearer <key>)");
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
  }

  // httplib's own answers (no route, a body beyond the limit) and exceptions no route caught,
  // as JSON errors like every other.
  void explain_what_no_route_answered() {
    http.set_error_handler([this](const httplib::Request& request, httplib::Response& response) {
      if (!response.body.empty()) return;  // a route already explained itself
      // A read that ran out of time: httplib says 400, the client should learn why.
      if (auto timeout = DeadlineServer::read_timeout_on_this_thread(); !timeout.empty()) {
        send_error(response, 408, timeout);
        return;
      }
      if (send_refusal(response)) return;
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
    http.set_exception_handler([this](const httplib::Request& request, httplib::Response& response,
                                      std::exception_ptr error) {
      send_outcome(response, service.outcome_of(error, request.method + " " + request.path));
    });
  }

  // Health, server metadata, metrics.
  void register_server_routes() {
    get("/v2/health/live", [](const httplib::Request&, httplib::Response& response) {
      send_json(response, 200, {{"live", true}});
    });
    get("/v2/health/ready", [this](const httplib::Request&, httplib::Response& response) {
      bool ready = service.ready();
      send_json(response, ready ? 200 : 503, {{"ready", ready}});
    });
    get("/v2", [this](const httplib::Request&, httplib::Response& response) {
      send_json(
          response, 200,
          {{"name", "torchship"}, {"version", version()}, {"extensions", service.extensions()}});
    });
    get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
      response.set_content(service.metrics().prometheus(), "text/plain; version=0.0.4");
    });
  }

  // A model's metadata and readiness, inference, classification.
  void register_model_routes() {
    const std::string model = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)";
    get(model, [this](const httplib::Request& request, httplib::Response& response) {
      on_request(request, response, [&] {
        send_json(
            response, 200,
            model_metadata_json(service.model_metadata(request.matches[1], request.matches[2])));
      });
    });
    get(model + "/ready", [this](const httplib::Request& request, httplib::Response& response) {
      on_model(request, response, false, [&](ModelVersion& entry, Clock::time_point) {
        bool ready = service.ready();
        send_json(response, ready ? 200 : 503, {{"name", entry.name}, {"ready", ready}});
      });
    });
    post(model + "/infer", [this](const httplib::Request& request, httplib::Response& response) {
      on_model(request, response, true, [&](ModelVersion& entry, Clock::time_point deadline) {
        infer(entry, request, response, deadline);
      });
    });
    post(model + "/classify", [this](const httplib::Request& request, httplib::Response& response) {
      on_model(request, response, true, [&](ModelVersion& entry, Clock::time_point deadline) {
        classify(entry, request, response, deadline);
      });
    });
    post(model + "/detect", [this](const httplib::Request& request, httplib::Response& response) {
      on_model(request, response, true, [&](ModelVersion& entry, Clock::time_point deadline) {
        detect(entry, request, response, deadline);
      });
    });
  }

  // Triton's model repository extension.
  void register_repository_routes() {
    post("/v2/repository/index", [this](const httplib::Request& request,
                                        httplib::Response& response) {
      on_request(request, response, [&] {
        json list = json::array();
        for (const auto& entry : service.repository().index(ready_only_parameter(request.body))) {
          json item = {{"name", entry.name}};
          if (!entry.version.empty()) item["version"] = entry.version;
          if (!entry.state.empty()) item["state"] = entry.state;
          if (!entry.reason.empty()) item["reason"] = entry.reason;
          list.push_back(std::move(item));
        }
        send_json(response, 200, list);
      });
    });
    const std::string control = R"(/v2/repository/models/([^/]+)/(load|unload))";
    post(control, [this](const httplib::Request& request, httplib::Response& response) {
      on_request(request, response, [&] {
        service.control(request.matches[1], request.matches[2] == "load",
                        control_parameters(request.body));
        response.status = 200;  // Triton answers with an empty body
      });
    });
  }
};

HttpFront::HttpFront(InferenceService& service) : impl_(std::make_unique<Impl>(service)) {}

HttpFront::~HttpFront() = default;

int HttpFront::bind(const std::string& host, int port) {
  int bound = port == 0 ? impl_->http.bind_to_any_port(host)
                        : (impl_->http.bind_to_port(host, port) ? port : -1);
  if (bound < 0) {
    throw bad_input("cannot listen on " + host + ":" + std::to_string(port) +
                    " (address in use, or not an address of this machine)");
  }
  impl_->bound_port = bound;
  impl_->http.widen_listen_backlog();
  return bound;
}

void HttpFront::serve() {
  {
    std::lock_guard<std::mutex> lock(impl_->lifecycle);
    if (impl_->stop_requested) return;  // stopped before it began: nothing to serve
    impl_->serving = true;
  }
  impl_->http.listen_after_bind();
  impl_->listen_returned = true;
}

void HttpFront::stop() {
  bool serving;
  {
    std::lock_guard<std::mutex> lock(impl_->lifecycle);
    impl_->stop_requested = true;
    serving = impl_->serving;
  }
  if (!serving) return;
  // A stop that comes between serve()'s start and httplib's listen loop would find nothing
  // running and be lost (SIGTERM right after start-up): wait for the loop, then stop it.
  while (!impl_->http.is_running() && !impl_->listen_returned) std::this_thread::yield();
  impl_->http.stop();
}

}  // namespace torchship::serving
