// The model repository: Triton's directory layout, our config.json, one Batcher per version.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "serving/batcher.h"
#include "torchship/model.h"

namespace torchship::serving {

// DIR/<model>/config.json; every field optional.
struct ModelConfig {
  int64_t max_batch_size = -1;       // -1: 32 when the manifest declares a batch, else 0
  int64_t max_queue_delay_us = 500;  // how long the first request waits for company
  size_t max_queue_size = 256;       // requests waiting; one more is answered 503
  int instances = 1;                 // executions at once (each runs one batch)

  static ModelConfig parse(const std::string& json_text, const std::string& origin);
};

struct ModelVersion {
  std::string name;
  std::string version;
  std::filesystem::path path;
  std::unique_ptr<Model> model;
  ModelConfig config;
  std::unique_ptr<Batcher> batcher;
};

class Repository {
 public:
  // `threads_per_instance`: intra-op threads of each instance's forwards; 0 shares the CPUs this
  // process may use between a version's instances.
  Repository(const std::filesystem::path& root, const LoadOptions& load, int threads_per_instance,
             Metrics& metrics);

  // nullptr when unknown; version "" picks the highest version.
  ModelVersion* find(const std::string& name, const std::string& version);
  bool has_model(const std::string& name) const;
  const std::vector<std::unique_ptr<ModelVersion>>& versions() const { return versions_; }
  std::vector<std::string> versions_of(const std::string& name) const;
  void stop();

 private:
  std::vector<std::unique_ptr<ModelVersion>> versions_;
};

}  // namespace torchship::serving
