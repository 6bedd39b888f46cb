#include "serving/repository.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "torchship/error.h"
#include "torchship/runtime.h"

namespace torchship::serving {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool is_version_name(const std::string& name) {
  return !name.empty() && name.size() < 19 &&
         std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every input a tensor (or a type a tensor fits), and the manifest declares a batch dimension.
bool can_batch(const Model& model) {
  const auto& manifest = model.manifest();
  if (!manifest || !manifest->batch_dim) return false;
  for (const auto& argument : model.inputs()) {
    if (!c10::TensorType::get()->isSubtypeOf(*argument.type)) return false;
  }
  return !model.inputs().empty();
}

}  // namespace

ModelConfig ModelConfig::parse(const std::string& json_text, const std::string& origin) {
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (!root.is_object()) throw bad_input(origin + ": expected a JSON object");
  static const std::set<std::string> kKnown = {"max_batch_size", "max_queue_delay_us",
                                               "max_queue_size", "instances"};
  ModelConfig config;
  for (const auto& [key, value] : root.items()) {
    if (!kKnown.count(key)) {
      throw bad_input(origin + ": unknown field '" + key +
                      "' (expected max_batch_size, max_queue_delay_us, max_queue_size, "
                      "instances)");
    }
    if (!value.is_number_integer() || value.get<int64_t>() < 0) {
      throw bad_input(origin + ": '" + key + "' must be a non-negative integer, got " +
                      value.dump());
    }
  }
  config.max_batch_size = root.value("max_batch_size", config.max_batch_size);
  config.max_queue_delay_us = root.value("max_queue_delay_us", config.max_queue_delay_us);
  config.max_queue_size = root.value("max_queue_size", config.max_queue_size);
  config.instances = root.value("instances", config.instances);
  if (config.max_queue_size == 0) throw bad_input(origin + ": 'max_queue_size' must be >= 1");
  if (config.instances < 1) throw bad_input(origin + ": 'instances' must be >= 1");
  return config;
}

Repository::Repository(const fs::path& root, const LoadOptions& load, int threads_per_instance,
                       Metrics& metrics) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    throw bad_input("--model-repository " + root.string() + ": not a directory");
  }
  std::vector<fs::path> model_dirs;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (entry.is_directory()) model_dirs.push_back(entry.path());
  }
  std::sort(model_dirs.begin(), model_dirs.end());
  for (const auto& model_dir : model_dirs) {
    std::string name = model_dir.filename().string();
    ModelConfig config;
    if (fs::exists(model_dir / "config.json")) {
      config = ModelConfig::parse(read_text(model_dir / "config.json"),
                                  (model_dir / "config.json").string());
    }
    std::vector<fs::path> version_dirs;
    for (const auto& entry : fs::directory_iterator(model_dir, ec)) {
      if (entry.is_directory() && is_version_name(entry.path().filename().string()) &&
          (fs::exists(entry.path() / "model.pt") || fs::exists(entry.path() / "model.pt2"))) {
        version_dirs.push_back(entry.path());
      }
    }
    std::sort(version_dirs.begin(), version_dirs.end(), [](const fs::path& a, const fs::path& b) {
      return std::stoll(a.filename().string()) < std::stoll(b.filename().string());
    });
    for (const auto& version_dir : version_dirs) {
      auto entry = std::make_unique<ModelVersion>();
      entry->name = name;
      entry->version = version_dir.filename().string();
      bool scripted = fs::exists(version_dir / "model.pt");
      bool compiled = fs::exists(version_dir / "model.pt2");
      if (scripted && compiled) {
        throw bad_input("model '" + name + "' version " + entry->version +
                        ": holds both model.pt and model.pt2; keep the one to serve");
      }
      entry->path = version_dir / (compiled ? "model.pt2" : "model.pt");
      try {
        // Each instance runs forwards of its own: a compiled package needs a runner for each.
        LoadOptions options = load;
        options.concurrent_forwards = std::max(1, config.instances);
        entry->model = std::make_unique<Model>(Model::load(entry->path, options));
      } catch (const Error& e) {
        throw Error(e.kind(), "model '" + name + "' version " + entry->version + ": " + e.what());
      }
      entry->config = config;
      BatchPolicy policy;
      bool batches = can_batch(*entry->model);
      policy.max_batch_size =
          !batches ? 0 : (config.max_batch_size < 0 ? 32 : config.max_batch_size);
      if (auto largest = entry->model->max_batch_size()) {  // a compiled package's range
        policy.max_batch_size = std::min<int64_t>(policy.max_batch_size, *largest);
      }
      policy.max_queue_delay = std::chrono::microseconds(config.max_queue_delay_us);
      policy.max_queue_size = config.max_queue_size;
      policy.instances = config.instances;
      // A version's instances run at once: they share the CPUs rather than each taking all of
      // them. Versions of different models each get all of them (they seldom all run at once).
      policy.threads = threads_per_instance > 0
                           ? threads_per_instance
                           : std::max(1, default_threads() / std::max(1, config.instances));
      entry->batcher =
          std::make_unique<Batcher>(*entry->model, policy, metrics, name, entry->version);
      versions_.push_back(std::move(entry));
    }
  }
  if (versions_.empty()) {
    throw bad_input("--model-repository " + root.string() +
                    ": no models (expected DIR/<model>/<version>/model.pt or model.pt2)");
  }
}

ModelVersion* Repository::find(const std::string& name, const std::string& version) {
  ModelVersion* found = nullptr;
  for (const auto& entry : versions_) {
    if (entry->name != name) continue;
    if (version.empty()) {
      found = entry.get();  // sorted by version: the last one is the highest
    } else if (entry->version == version) {
      return entry.get();
    }
  }
  return version.empty() ? found : nullptr;
}

bool Repository::has_model(const std::string& name) const {
  return std::any_of(versions_.begin(), versions_.end(),
                     [&](const auto& entry) { return entry->name == name; });
}

std::vector<std::string> Repository::versions_of(const std::string& name) const {
  std::vector<std::string> out;
  for (const auto& entry : versions_) {
    if (entry->name == name) out.push_back(entry->version);
  }
  return out;
}

void Repository::stop() {
  for (const auto& entry : versions_) entry->batcher->stop();
}

}  // namespace torchship::serving
