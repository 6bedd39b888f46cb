#include "serving/metrics.h"

#include <algorithm>
#include <cstdio>

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

void Metrics::request(const std::string& model, const std::string& version, int status,
                      double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{model, version, status}];
  if (!model.empty() && status == 200) models_[{model, version}].latency.observe(seconds);
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

void Metrics::queue_depth(const std::string& model, const std::string& version, size_t depth) {
  std::lock_guard<std::mutex> lock(mutex_);
  models_[{model, version}].queue_depth = depth;
}

std::string Metrics::prometheus() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  out +=
      "# HELP torchship_requests_total Inference requests (infer, classify) by model, version "
      "and HTTP status.\n# TYPE torchship_requests_total counter\n";
  for (const auto& [key, count] : requests_) {
    const auto& [model, version, status] = key;
    out += "torchship_requests_total{" + model_labels(model, version) + ",status=\"" +
           std::to_string(status) + "\"} " + std::to_string(count) + "\n";
  }
  out +=
      "# HELP torchship_request_duration_seconds Time from a request's arrival to its "
      "answer, successful requests.\n# TYPE torchship_request_duration_seconds histogram\n";
  for (const auto& [key, entry] : models_) {
    entry.latency.write(out, "torchship_request_duration_seconds",
                        model_labels(key.first, key.second));
  }
  out +=
      "# HELP torchship_queue_duration_seconds Time a request waited for its batch to "
      "start.\n# TYPE torchship_queue_duration_seconds histogram\n";
  for (const auto& [key, entry] : models_) {
    entry.queue.write(out, "torchship_queue_duration_seconds", model_labels(key.first, key.second));
  }
  out +=
      "# HELP torchship_batch_requests Requests run together in one execution.\n"
      "# TYPE torchship_batch_requests histogram\n";
  for (const auto& [key, entry] : models_) {
    entry.batch.write(out, "torchship_batch_requests", model_labels(key.first, key.second));
  }
  out +=
      "# HELP torchship_inferences_total Items (batch rows) run through the model.\n"
      "# TYPE torchship_inferences_total counter\n";
  for (const auto& [key, entry] : models_) {
    out += "torchship_inferences_total{" + model_labels(key.first, key.second) + "} " +
           std::to_string(entry.inferences) + "\n";
  }
  out +=
      "# HELP torchship_executions_total Forward calls.\n"
      "# TYPE torchship_executions_total counter\n";
  for (const auto& [key, entry] : models_) {
    out += "torchship_executions_total{" + model_labels(key.first, key.second) + "} " +
           std::to_string(entry.executions) + "\n";
  }
  out +=
      "# HELP torchship_queue_depth Requests waiting for execution.\n"
      "# TYPE torchship_queue_depth gauge\n";
  for (const auto& [key, entry] : models_) {
    out += "torchship_queue_depth{" + model_labels(key.first, key.second) + "} " +
           std::to_string(entry.queue_depth) + "\n";
  }
  return out;
}

}  // namespace torchship::serving
