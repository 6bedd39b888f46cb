// Server metrics in Prometheus text format: request counts by model and status, latency and
// queue-time histograms, batch sizes, inferences.
#pragma once

#include <array>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "serving/status.h"

namespace torchship::serving {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // Appends the _bucket, _sum and _count lines for `name` with `labels` ("a=\"x\",b=\"y\"").
  void write(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  // One finished inference request (HTTP infer or classify, gRPC ModelInfer) and how it went;
  // model "" when unknown. Its status is labelled with the HTTP status number for every
  // protocol, the vocabulary dashboards already speak (docs/serving.md).
  void request(const std::string& model, const std::string& version, const char* protocol,
               Status status, double seconds);
  // One execution of a batch: its size in requests and in items, and each request's wait.
  void execution(const std::string& model, const std::string& version, size_t requests,
                 int64_t items, const std::vector<double>& queue_seconds);
  void queue_depth(const std::string& model, const std::string& version, size_t depth);
  // Repository control: a version became ready or was unloaded, or failed to (re)load.
  void model_ready(const std::string& model, const std::string& version, bool ready);
  void model_load_failed(const std::string& model, const std::string& version);
  // An HTTP connection closed with 408 because a request's "header" or "body" missed its
  // deadline, or the client went silent mid-request ("silence").
  void read_timeout(const std::string& part);

  std::string prometheus() const;

 private:
  using Key = std::pair<std::string, std::string>;  // model, version
  struct PerModel {
    Histogram latency{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}};
    Histogram queue{{0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1}};
    Histogram batch{{1, 2, 4, 8, 16, 32, 64, 128, 256}};
    uint64_t inferences = 0;  // items run through the model
    uint64_t executions = 0;  // forward calls
    size_t queue_depth = 0;
    bool ready = false;
    uint64_t load_failures = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, std::string, int>, uint64_t> requests_;
  std::map<Key, PerModel> models_;
  std::map<std::string, uint64_t> read_timeouts_;  // by part
};

}  // namespace torchship::serving
