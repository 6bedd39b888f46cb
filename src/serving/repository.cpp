#include "serving/repository.h"

#include <algorithm>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/text.h"
#include "torchship/error.h"
#include "torchship/memory.h"
#include "torchship/runtime.h"

namespace torchship::serving {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool is_version_name(const std::string& name) {
  return !name.empty() && name.size() < 19 &&
         std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isdigit(c); });
}

// Version folders are numbers; their order is numeric ("10" after "9").
std::optional<int64_t> version_number(const std::string& name) {
  if (!is_version_name(name)) return std::nullopt;
  return std::stoll(name);
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

std::string engine_chosen(const Model& model) {
  for (const auto& note : model.notes()) {
    if (note.rfind("engine: ", 0) == 0 && note.find(" left out: ") == std::string::npos) {
      return "; " + note + " (config.json's \"engine\": \"" + format_id(model.format()) + "\"" +
             (model.precision() == "bf16" ? ", \"precision\": \"bf16\"" : "") +
             " keeps this choice)";
    }
  }
  return "";
}

std::string* ModelConfig::text_field(const std::string& key) {
  if (key == "optimization") return &optimization;
  if (key == "engine") return &engine;
  if (key == "precision") return &precision;
  return nullptr;
}

std::string ModelConfig::text_field_values(const std::string& key) {
  if (key == "engine") return "auto, torchscript, aoti or openvino";
  if (key == "precision") return "fp32, bf16 or auto";
  return "auto, stored or a candidate's name";
}

ModelConfig ModelConfig::parse(const std::string& json_text, const std::string& origin) {
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (!root.is_object()) throw bad_input(origin + ": expected a JSON object");
  static const std::set<std::string> kKnown = {"max_batch_size", "max_queue_delay_us",
                                               "max_queue_size", "instances",
                                               "optimization",   "engine"};
  ModelConfig config;
  for (const auto& [key, value] : root.items()) {
    if (!kKnown.count(key)) {
      throw bad_input(origin + ": unknown field '" + key +
                      "' (expected max_batch_size, max_queue_delay_us, max_queue_size, "
                      "instances, optimization, engine, precision)");
    }
    if (auto* text = config.text_field(key)) {
      if (!value.is_string()) {
        throw bad_input(origin + ": '" + key + "' must be a string (" +
                        ModelConfig::text_field_values(key) + "), got " + value.dump());
      }
      *text = value.get<std::string>();
      continue;
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

ModelControl parse_model_control(const std::string& text) {
  if (text == "none") return ModelControl::None;
  if (text == "explicit") return ModelControl::Explicit;
  if (text == "poll") return ModelControl::Poll;
  throw bad_input("--model-control-mode must be none, explicit or poll, got \"" + text + "\"");
}

namespace {

// What a version was loaded from: its model file's name, size and modification time, and the
// model's config.json. Polling reloads a version whose fingerprint changed.
std::string fingerprint(const fs::path& model_file, const std::string& config_text) {
  std::error_code ec;
  auto size = fs::file_size(model_file, ec);
  auto time = fs::last_write_time(model_file, ec).time_since_epoch().count();
  return model_file.filename().string() + " " + std::to_string(size) + " " + std::to_string(time) +
         "\n" + config_text;
}

// A version folder's weights update: the archive of a lower version run with new weights.
constexpr const char* kWeightsFile = "model.weights";

// A version's model file, by the format it holds: TorchScript, AOTInductor, OpenVINO, or every
// form (the engine chosen at load).
const std::vector<std::string> kModelFiles = {"model.pt", "model.pt2", "model.ov",
                                              "model.torchship", kWeightsFile};

// The model file of a version folder; empty when it has none yet (a folder being filled).
fs::path model_file_of(const fs::path& version_dir) {
  std::vector<std::string> present;
  for (const auto& name : kModelFiles) {
    if (fs::exists(version_dir / name)) present.push_back(name);
  }
  if (present.size() > 1) {
    std::string names = present[0];
    for (size_t i = 1; i < present.size(); ++i) {
      names += (i + 1 == present.size() ? " and " : ", ") + present[i];
    }
    throw bad_input("holds both " + names + "; keep the one to serve");
  }
  return present.empty() ? fs::path() : version_dir / present[0];
}

// What a version folder holds now: its model file and that file's fingerprint, or why it cannot
// load (the folder holds more than one model file). No file and no reason: not filled yet.
struct VersionFile {
  fs::path model_file;
  std::string print;   // fingerprint(model_file, the config), "" without a model file
  std::string reason;  // why the folder cannot load, "" when it can
};

VersionFile version_file(const fs::path& version_dir, const std::string& config_text) {
  VersionFile file;
  try {
    file.model_file = model_file_of(version_dir);
  } catch (const Error& e) {
    file.reason = e.what();
  }
  if (file.reason.empty() && !file.model_file.empty()) {
    file.print = fingerprint(file.model_file, config_text);
  }
  return file;
}

// A file rewritten while it loaded may have been read half old, half new: refused, so that what
// loaded is dropped and the file taken up again once it has settled (the next poll or request).
void check_settled(const fs::path& model_file, const std::string& config_text,
                   const std::string& print) {
  if (fingerprint(model_file, config_text) != print) {
    throw bad_model("cannot load " + model_file.string() +
                    ": the file changed while it was loading");
  }
}

}  // namespace

Repository::Repository(const fs::path& root, RepositoryOptions options, Metrics& metrics, Log log)
    : root_(root), options_(std::move(options)), metrics_(metrics), log_(std::move(log)) {
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) {
    throw bad_input("--model-repository " + root_.string() + ": not a directory");
  }
  std::lock_guard<std::mutex> control(control_mutex_);
  std::vector<std::string> names;
  if (options_.control == ModelControl::Explicit) {
    bool all = std::find(options_.startup_models.begin(), options_.startup_models.end(), "*") !=
               options_.startup_models.end();
    names = all ? model_names_on_disk() : options_.startup_models;
  } else {
    names = model_names_on_disk();
    if (!options_.startup_models.empty()) {
      throw bad_input(
          "--load-model needs --model-control-mode explicit (this mode loads every "
          "model in the repository)");
    }
  }
  // At start a failure stops the server with its message, and the summary lists what loaded:
  // nothing to log until then. Polling is the exception: a file found broken at start (a copy
  // cut off by a crash) is logged, reported by the index and retried once it changes, while
  // the other models and versions serve.
  bool polling = options_.control == ModelControl::Poll;
  Log later = std::move(log_);
  log_ = [&later, polling](const std::string& line) {
    if (polling && line.rfind("error: ", 0) == 0) later(line);
  };
  for (const auto& name : names) {
    if (!holds(name)) {
      throw bad_input("--load-model " + name + ": the repository " + root_.string() +
                      " has no model folder of that name");
    }
    loader_.run([&] { synchronize(name, /*on_request=*/!polling); });
  }
  if (options_.control == ModelControl::None && loaded().empty()) {
    throw bad_input("--model-repository " + root_.string() +
                    ": no models (expected DIR/<model>/<version>/model.pt, model.pt2, model.ov or "
                    "model.torchship)");
  }
  log_ = std::move(later);
}

Repository::~Repository() = default;

// The server keeps freed memory in the process (tune_memory_for_inference): without giving it
// back here, each reload left the C heap a little larger (bench/soak.py: +7 to 12% over 3
// minutes of reloads every 15 s, against +2 to 4% with this).
ModelVersion::~ModelVersion() {
  batcher.reset();  // stops before the model goes
  model.reset();
  release_free_memory();
}

std::vector<std::string> Repository::model_names_on_disk() const {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    if (entry.is_directory(ec)) names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// What a model's folder holds now: its config (or why it does not parse) and version folders.
struct Repository::ModelFolder {
  std::string config_text;
  ModelConfig config;
  std::string config_error;
  std::map<int64_t, fs::path> versions;  // by version number
};

Repository::ModelFolder Repository::read_model_folder(const fs::path& model_dir) {
  ModelFolder folder;
  std::error_code ec;
  if (fs::exists(model_dir / "config.json", ec)) {
    folder.config_text = read_text(model_dir / "config.json");
    try {
      folder.config = ModelConfig::parse(folder.config_text, (model_dir / "config.json").string());
    } catch (const Error& e) {
      folder.config_error = e.what();
    }
  }
  if (fs::is_directory(model_dir, ec)) {
    for (const auto& entry : fs::directory_iterator(model_dir, ec)) {
      auto number = version_number(entry.path().filename().string());
      if (number && entry.is_directory(ec)) folder.versions[*number] = entry.path();
    }
  }
  return folder;
}

// Brings model `name` in line with its folder: loads new and changed versions beside the serving
// ones, swaps in those that load, keeps the old ones where loading failed, and drops versions
// whose folder is gone. Called with control_mutex_ held; mutex_ only guards the swap.
void Repository::synchronize(const std::string& name, bool on_request) {
  fs::path model_dir = root_ / name;
  ModelFolder folder = read_model_folder(model_dir);
  ModelState current;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    current = models_[name];
  }
  ModelState next;
  std::vector<std::string> failures;
  for (const auto& [number, version_dir] : folder.versions) {
    std::string failure =
        synchronize_version(name, number, version_dir, folder, current, on_request, next);
    if (!failure.empty()) failures.push_back(failure);
  }
  for (const auto& [number, entry] : current.ready) {
    if (!next.ready.count(number)) {
      metrics_.model_ready(name, entry->version, false);
      log_("unloaded " + name + " v" + entry->version + " (its folder is gone)");
    }
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::error_code ec;
    if (fs::is_directory(model_dir, ec)) {
      models_[name] = next;
    } else {
      models_.erase(name);  // the whole model is gone from the repository
    }
  }
  if (on_request && !failures.empty()) throw bad_input(failures.front());
  if (on_request && folder.versions.empty()) {
    throw bad_input("model '" + name + "' has no versions (expected " + (model_dir / "1").string() +
                    "/model.pt, model.pt2, model.ov or model.torchship)");
  }
}

std::string Repository::synchronize_version(const std::string& name, int64_t number,
                                            const fs::path& version_dir, const ModelFolder& folder,
                                            const ModelState& current, bool on_request,
                                            ModelState& next) {
  std::string version = version_dir.filename().string();
  auto serving = current.ready.find(number);
  bool is_serving = serving != current.ready.end();
  auto keep_serving = [&] {
    if (is_serving) next.ready[number] = serving->second;
  };
  auto [model_file, print, reason] = version_file(version_dir, folder.config_text);
  if (reason.empty() && model_file.empty()) {  // not filled yet: nothing to load
    keep_serving();
    return "";
  }
  if (is_serving && reason.empty() && serving->second->fingerprint == print) {
    keep_serving();  // unchanged
    return "";
  }
  // Polling does not retry a file that failed until it changes; a request (or the start) does.
  auto failed = current.failed.find(number);
  if (!on_request && failed != current.failed.end() && failed->second.fingerprint == print &&
      !print.empty()) {
    next.failed[number] = failed->second;
    keep_serving();
    return "";
  }
  if (reason.empty()) reason = folder.config_error;
  if (reason.empty()) {
    try {
      auto loaded = load_version(name, version, model_file, print, folder.config,
                                 update_bases(number, folder, current, next));
      check_settled(model_file, folder.config_text, print);  // else what loaded is dropped
      next.ready[number] = std::move(loaded);
      metrics_.model_ready(name, version, true);
      log_((is_serving ? "reloaded " : "loaded ") + name + " v" + version + " from " +
           model_file.string() + engine_chosen(*next.ready[number]->model));
      return "";
    } catch (const Error& e) {
      reason = e.what();
    } catch (const std::exception& e) {
      reason = first_line(e);
    }
  }
  std::string where = "model '" + name + "' version " + version;
  next.failed[number] = {reason, print};
  metrics_.model_load_failed(name, version);
  keep_serving();
  log_("error: " + where + ": " + reason +
       (is_serving ? " (the version loaded before goes on serving)" : ""));
  return where + ": " + reason;
}

Repository::UpdateBases Repository::update_bases(int64_t number, const ModelFolder& folder,
                                                 const ModelState& current,
                                                 const ModelState& next) {
  UpdateBases bases;
  for (const auto* state : {&next, &current}) {
    for (auto it = state->ready.rbegin(); it != state->ready.rend(); ++it) {
      if (it->first != number) bases.loaded.push_back(it->second);
    }
  }
  for (auto it = folder.versions.rbegin(); it != folder.versions.rend(); ++it) {
    if (it->first < number) bases.lower_folders.push_back(it->second);
  }
  return bases;
}

namespace {

// The model a weights update runs: the form of a version loaded before that it fits, reused
// (Model::with_weights: nothing compiled, an AOTInductor library not mapped again); failing
// that, the highest lower version folder holding an archive it fits, loaded for it.
Model with_update(const fs::path& update_file, const LoadOptions& load,
                  const std::vector<std::shared_ptr<ModelVersion>>& loaded,
                  const std::vector<fs::path>& lower_folders) {
  WeightsUpdate update = WeightsUpdate::open(update_file);
  for (const auto& version : loaded) {
    if (update.mismatch(version->model->archive()).empty()) {
      return version->model->with_weights(update);
    }
  }
  std::string why = "no lower version holds the archive it updates (" + update.base_name() + ")";
  for (const auto& folder : lower_folders) {
    fs::path archive_file = model_file_of(folder);
    if (archive_file.empty() || archive_file.filename() == kWeightsFile) continue;
    try {
      Model base = Model::load(archive_file, load);
      why = update.mismatch(base.archive());
      if (why.empty()) return base.with_weights(update);
    } catch (const Error& e) {
      why = e.what();
    }
    why = archive_file.string() + ": " + why;
  }
  throw bad_input("cannot apply " + update_file.string() + ": " + why);
}

}  // namespace

std::shared_ptr<ModelVersion> Repository::load_version(
    const std::string& name, const std::string& version, const fs::path& model_file,
    const std::string& fingerprint, const ModelConfig& config, const UpdateBases& bases) {
  auto entry = std::make_shared<ModelVersion>();
  entry->name = name;
  entry->version = version;
  entry->path = model_file;
  entry->fingerprint = fingerprint;
  entry->config = config;
  // Each instance runs forwards of its own: a compiled package needs a runner for each. A
  // version's instances run at once: they share the CPUs rather than each taking all of them.
  // Versions of different models each get all of them (they seldom all run at once).
  LoadOptions load = options_.load;
  load.concurrent_forwards = std::max(1, config.instances);
  load.threads = options_.threads_per_instance > 0
                     ? options_.threads_per_instance
                     : std::max(1, default_threads() / std::max(1, config.instances));
  // A choice recorded in config.json spares the server timing the candidates at each start.
  if (!config.optimization.empty()) load.optimization = config.optimization;
  if (!config.engine.empty()) load.engine = config.engine;  // the form an earlier load chose
  if (!config.precision.empty()) load.precision = config.precision;
  entry->model =
      std::make_unique<Model>(model_file.filename() == kWeightsFile
                                  ? with_update(model_file, load, bases.loaded, bases.lower_folders)
                                  : Model::load(model_file, load));
  BatchPolicy policy;
  bool batches = can_batch(*entry->model);
  policy.max_batch_size = !batches ? 0 : (config.max_batch_size < 0 ? 32 : config.max_batch_size);
  if (auto largest = entry->model->max_batch_size()) {  // a compiled package's range
    policy.max_batch_size = std::min<int64_t>(policy.max_batch_size, *largest);
  }
  policy.max_queue_delay = std::chrono::microseconds(config.max_queue_delay_us);
  policy.max_queue_size = config.max_queue_size;
  policy.instances = config.instances;
  policy.threads = load.threads;
  entry->batcher = std::make_unique<Batcher>(*entry->model, policy, metrics_, name, version);
  return entry;
}

std::shared_ptr<ModelVersion> Repository::find(const std::string& name,
                                               const std::string& version) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto model = models_.find(name);
  if (model == models_.end() || model->second.ready.empty()) return nullptr;
  const auto& ready = model->second.ready;
  if (version.empty()) return ready.rbegin()->second;  // the highest
  for (const auto& [number, entry] : ready) {
    if (entry->version == version) return entry;
  }
  return nullptr;
}

bool Repository::has_model(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto model = models_.find(name);
  return model != models_.end() && !model->second.ready.empty();
}

bool Repository::holds(const std::string& name) const {
  std::error_code ec;
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != ".." &&
         fs::is_directory(root_ / name, ec);
}

std::vector<std::string> Repository::versions_of(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> out;
  auto model = models_.find(name);
  if (model == models_.end()) return out;
  for (const auto& [number, entry] : model->second.ready) out.push_back(entry->version);
  return out;
}

std::vector<std::shared_ptr<ModelVersion>> Repository::loaded() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::shared_ptr<ModelVersion>> out;
  for (const auto& [name, model] : models_) {
    for (const auto& [number, entry] : model.ready) out.push_back(entry);
  }
  return out;
}

std::vector<IndexEntry> Repository::index(bool ready_only) const {
  std::vector<std::string> names = model_names_on_disk();
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [name, model] : models_) {
    if (!std::binary_search(names.begin(), names.end(), name)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  std::vector<IndexEntry> out;
  for (const auto& name : names) {
    auto model = models_.find(name);
    if (model == models_.end() || (model->second.ready.empty() && model->second.failed.empty())) {
      if (ready_only) continue;
      bool unloaded = model != models_.end() && model->second.unloaded;
      out.push_back({name, "", unloaded ? "UNAVAILABLE" : "", unloaded ? "unloaded" : ""});
      continue;
    }
    std::set<int64_t> numbers;
    for (const auto& entry : model->second.ready) numbers.insert(entry.first);
    for (const auto& entry : model->second.failed) numbers.insert(entry.first);
    for (int64_t number : numbers) {
      auto ready = model->second.ready.find(number);
      auto failed = model->second.failed.find(number);
      if (ready != model->second.ready.end()) {
        std::string reason;
        if (failed != model->second.failed.end()) {
          reason =
              "serving the version loaded before; reloading it failed: " + failed->second.reason;
        }
        out.push_back({name, ready->second->version, "READY", reason});
      } else if (!ready_only) {
        out.push_back({name, std::to_string(number), "UNAVAILABLE", failed->second.reason});
      }
    }
  }
  return out;
}

void Repository::require_explicit(const char* action) const {
  if (options_.control == ModelControl::Explicit) return;
  throw ControlRefused(std::string(action) +
                       " models on request needs --model-control-mode explicit (this server runs "
                       "in mode " +
                       (options_.control == ModelControl::Poll ? "poll" : "none") + ")");
}

void Repository::load(const std::string& name) {
  require_explicit("loading");
  if (!holds(name)) {
    throw UnknownModel("the repository has no model '" + name +
                       "' (it has: " + join(model_names_on_disk()) + ")");
  }
  std::lock_guard<std::mutex> control(control_mutex_);
  loader_.run([&] { synchronize(name, /*on_request=*/true); });
}

void Repository::unload(const std::string& name) {
  require_explicit("unloading");
  std::lock_guard<std::mutex> control(control_mutex_);
  ModelState removed;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto model = models_.find(name);
    if (model == models_.end() && !holds(name)) {
      throw UnknownModel("the repository has no model '" + name + "'");
    }
    if (model != models_.end()) removed = std::move(model->second);
    models_[name] = ModelState{};
    models_[name].unloaded = true;
  }
  for (const auto& [number, entry] : removed.ready) {
    metrics_.model_ready(name, entry->version, false);
    log_("unloaded " + name + " v" + entry->version + " (requests in flight finish on it)");
  }
}

void Repository::poll() {
  std::lock_guard<std::mutex> control(control_mutex_);
  std::vector<std::string> names = model_names_on_disk();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [name, model] : models_) {
      if (!std::binary_search(names.begin(), names.end(), name)) names.push_back(name);
    }
  }
  loader_.run([&] {
    for (const auto& name : names) synchronize(name, /*on_request=*/false);
  });
}

void Repository::stop() {
  for (const auto& entry : loaded()) entry->batcher->stop();
}

}  // namespace torchship::serving
