#include "serving/metrics.h"

#include <algorithm>
#include <cstdio>

#include "serving/http_status.h"

namespace torchship::serving {
namespace {

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

std::string model_labels(const std::string& model, const std::string& version) {
  return "model=\"" + model + "\",version=\"" + version + "\"";
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[bucket];
  sum_ += value;
  ++count_;
}

void Histogram::write(std::string& out, const std::string& name, const std::string& labels) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    std::string le = i < bounds_.size() ? number(bounds_[i]) : "+Inf";
    out += name + "_bucket{" + labels + ",le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_sum{" + labels + "} " + number(sum_) + "\n";
  out += name + "_count{" + labels + "} " + std::to_string(count_) + "\n";
}

void Metrics::request(const std::string& model, const std::string& version, const char* protocol,
                      Status status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{model, version, protocol, http_status(status)}];
  if (!model.empty() && status == Status::Ok) models_[{model, version}].latency.observe(seconds);
}

void Metrics::execution(const std::string& model, const std::string& version, size_t requests,
                        int64_t items, const std::vector<double>& queue_seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& entry = models_[{model, version}];
  entry.batch.observe(static_cast<double>(requests));
  entry.inferences += static_cast<uint64_t>(items);
  ++entry.executions;
  for (double seconds : queue_seconds) entry.queue.observe(seconds);
}

void Metrics::model_ready(const std::string& model, const std::string& version, bool ready) {
  std::lock_guard<std::mutex> lock(mutex_);
  models_[{model, version}].ready = ready;
}

void Metrics::model_load_failed(const std::string& model, const std::string& version) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++models_[{model, version}].load_failures;
}

void Metrics::queue_depth(const std::string& model, const std::string& version, size_t depth) {
  std::lock_guard<std::mutex> lock(mutex_);
  models_[{model, version}].queue_depth = depth;
}

void Metrics::read_timeout(const std::string& part) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++read_timeouts_[part];
}

std::string Metrics::prometheus() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  out +=
      "# HELP torchship_requests_total Inference requests (HTTP infer, classify and detect, gRPC "
      "ModelInfer) by model, version, protocol and status (HTTP's; gRPC codes map to it as in "
      "docs/serving.md).\n# TYPE torchship_requests_total counter\n";
  for (const auto& [key, count] : requests_) {
    const auto& [model, version, protocol, status] = key;
    out += "torchship_requests_total{" + model_labels(model, version) + ",protocol=\"" + protocol +
           "\",status=\"" + std::to_string(status) + "\"} " + std::to_string(count) + "\n";
  }
  // One metric per model version: its header once, then a line (or histogram) per version.
  auto per_model = [&](const char* name, const char* type, const char* help, auto&& write) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    for (const auto& [key, entry] : models_)
      write(name, model_labels(key.first, key.second), entry);
  };
  auto histogram = [&](const Histogram PerModel::*member) {
    return [&out, member](const char* name, const std::string& labels, const PerModel& entry) {
      (entry.*member).write(out, name, labels);
    };
  };
  auto value = [&out](auto member) {
    return [&out, member](const char* name, const std::string& labels, const PerModel& entry) {
      out += std::string(name) + "{" + labels + "} " + std::to_string(entry.*member) + "\n";
    };
  };
  per_model("torchship_request_duration_seconds", "histogram",
            "Time from a request's arrival to its answer, successful requests.",
            histogram(&PerModel::latency));
  per_model("torchship_queue_duration_seconds", "histogram",
            "Time a request waited for its batch to start.", histogram(&PerModel::queue));
  per_model("torchship_batch_requests", "histogram", "Requests run together in one execution.",
            histogram(&PerModel::batch));
  per_model("torchship_inferences_total", "counter", "Items (batch rows) run through the model.",
            value(&PerModel::inferences));
  per_model("torchship_executions_total", "counter", "Forward calls.",
            value(&PerModel::executions));
  per_model("torchship_queue_depth", "gauge", "Requests waiting for execution.",
            value(&PerModel::queue_depth));
  per_model("torchship_model_ready", "gauge",
            "1 while the version is loaded and serving, 0 once unloaded or never loaded.",
            value(&PerModel::ready));
  per_model("torchship_model_load_failures_total", "counter",
            "Loads of the version that failed (the version loaded before, if any, went on "
            "serving).",
            value(&PerModel::load_failures));
  out +=
      "# HELP torchship_http_read_timeouts_total HTTP connections closed with 408: a request's "
      "header or body missed its deadline, or the client went silent mid-request.\n"
      "# TYPE torchship_http_read_timeouts_total counter\n";
  for (const char* part : {"header", "body", "silence"}) {
    auto found = read_timeouts_.find(part);
    out += std::string("torchship_http_read_timeouts_total{part=\"") + part + "\"} " +
           std::to_string(found == read_timeouts_.end() ? 0 : found->second) + "\n";
  }
  return out;
}

}  // namespace torchship::serving
