// The model repository: Triton's directory layout, our config.json, one Batcher per loaded
// version, and control over what is loaded while the server runs (Triton's model control modes).
//
// Versions are shared: a request holds its version (std::shared_ptr) from lookup to answer, so a
// version unloaded or replaced meanwhile finishes the requests it has; its batcher stops when the
// last one lets go. A new version is loaded beside the serving ones and swapped in only once it
// works: a broken one is recorded (index, log, metrics) and the old one goes on serving.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "serving/batcher.h"
#include "serving/load_thread.h"
#include "serving/status.h"
#include "torchship/model.h"

namespace torchship::serving {

// DIR/<model>/config.json; every field optional.
struct ModelConfig {
  int64_t max_batch_size = -1;       // -1: 32 when the manifest declares a batch, else 0
  int64_t max_queue_delay_us = 500;  // how long the first request waits for company
  size_t max_queue_size = 256;       // requests waiting; one more is answered 503
  int instances = 1;                 // executions at once (each runs one batch)
  std::string engine;                // LoadOptions::engine; "": the server's
  std::string precision;             // LoadOptions::precision; "": the server's
  std::string optimization;          // LoadOptions::optimization; "": the server's

  static ModelConfig parse(const std::string& json_text, const std::string& origin);
  // The string field a config.json key names (optimization, engine, precision), or null; and
  // the values it takes, for the refusal of another type.
  std::string* text_field(const std::string& key);
  static std::string text_field_values(const std::string& key);
};

struct ModelVersion {
  std::string name;
  std::string version;
  std::filesystem::path path;
  std::string fingerprint;  // the files it was loaded from: a changed one means reload
  std::unique_ptr<Model> model;
  ModelConfig config;
  std::unique_ptr<Batcher> batcher;  // declared after the model: stops before it is freed
  ~ModelVersion();                   // gives the freed memory back to the system
};

// One line of the repository index (Triton's RepositoryIndex).
struct IndexEntry {
  std::string name;
  std::string version;  // empty for a model with nothing loaded
  std::string state;    // READY, UNAVAILABLE, or empty for a model never loaded
  std::string reason;   // why UNAVAILABLE: the load's failure, "unloaded"
};

// Who decides which models are loaded (Triton's --model-control-mode).
enum class ModelControl {
  None,      // every model at start, fixed; load / unload requests are refused
  Explicit,  // the models named at start (load_models), then load / unload requests
  Poll,      // every model at start, then the repository is rescanned for changes
};

// "none", "explicit", "poll"; throws Error(BadInput) on anything else.
ModelControl parse_model_control(const std::string& text);

struct RepositoryOptions {
  LoadOptions load;
  // Intra-op threads of each instance's forwards; 0 shares the CPUs this process may use
  // between a version's instances.
  int threads_per_instance = 0;
  ModelControl control = ModelControl::None;
  std::vector<std::string> startup_models;  // Explicit: loaded at start ("*": every model)
};

// For a model loaded from an archive of every form: "; engine: <which runs, and the times>
// (config.json's "engine": ... keeps this choice)"; "" for other archives.
std::string engine_chosen(const Model& model);

class Repository {
 public:
  using Log = std::function<void(const std::string&)>;

  // Loads what the control mode loads at start; throws Error naming the first version that
  // fails (a server does not start with a broken repository).
  Repository(const std::filesystem::path& root, RepositoryOptions options, Metrics& metrics,
             Log log);
  ~Repository();

  // A ready version; nullptr when there is none. Version "" picks the highest ready one.
  std::shared_ptr<ModelVersion> find(const std::string& name, const std::string& version) const;
  bool has_model(const std::string& name) const;  // any version ready
  bool holds(const std::string& name) const;      // a model folder of that name
  std::vector<std::string> versions_of(const std::string& name) const;  // ready ones, ascending
  std::vector<std::shared_ptr<ModelVersion>> loaded() const;
  std::vector<IndexEntry> index(bool ready_only) const;
  ModelControl control() const { return options_.control; }

  // (Re)loads model `name` from the repository: new versions are loaded, changed ones reloaded,
  // versions gone from disk unloaded. Throws Error(BadInput) naming the first version that
  // failed to load (the versions loaded before it go on serving); UnknownModel when the repository
  // has no such model; ControlRefused unless the mode is Explicit.
  void load(const std::string& name);
  // Unloads every version of `name` (requests in flight finish). Throws ControlRefused unless
  // the mode is Explicit, UnknownModel for a model neither loaded nor in the repository.
  void unload(const std::string& name);
  // Poll mode: picks up models and versions added, changed or removed since the last scan.
  void poll();

  // Stops every batcher after the queued requests (the server is shutting down).
  void stop();

 private:
  struct ModelFolder;  // what a model's folder holds now (repository.cpp)
  struct ModelState {
    std::map<int64_t, std::shared_ptr<ModelVersion>> ready;  // by version number
    struct Failure {
      std::string reason;
      std::string fingerprint;  // polling does not retry the version until it changes
    };
    std::map<int64_t, Failure> failed;
    bool unloaded = false;
  };

  // `on_request`: at start or on a load request, which retries failed files and throws the
  // first failure; polling neither retries an unchanged failed file nor throws.
  void synchronize(const std::string& name, bool on_request);
  static ModelFolder read_model_folder(const std::filesystem::path& model_dir);
  // One version folder of it: what stays, loads or fails goes into `next`; returns
  // "model 'NAME' version N: why" when the version failed to load, else "".
  std::string synchronize_version(const std::string& name, int64_t number,
                                  const std::filesystem::path& version_dir,
                                  const ModelFolder& folder, const ModelState& current,
                                  bool on_request, ModelState& next);
  // What a weights update (model.weights) in a version folder may apply to: the versions
  // loaded before it (lower ones of this pass first, then those serving), and the folders of
  // the lower versions, highest first.
  struct UpdateBases {
    std::vector<std::shared_ptr<ModelVersion>> loaded;
    std::vector<std::filesystem::path> lower_folders;
  };
  static UpdateBases update_bases(int64_t number, const ModelFolder& folder,
                                  const ModelState& current, const ModelState& next);
  // One version loaded, warmed up and given its batcher; throws what Model::load throws.
  std::shared_ptr<ModelVersion> load_version(const std::string& name, const std::string& version,
                                             const std::filesystem::path& model_file,
                                             const std::string& fingerprint,
                                             const ModelConfig& config, const UpdateBases& bases);
  // ControlRefused unless the mode is Explicit.
  void require_explicit(const char* action) const;
  std::vector<std::string> model_names_on_disk() const;

  std::filesystem::path root_;
  RepositoryOptions options_;
  Metrics& metrics_;
  Log log_;
  std::mutex control_mutex_;  // one load / unload / poll at a time (loads are slow)
  mutable std::mutex mutex_;  // guards models_, held only to read or swap entries
  std::map<std::string, ModelState> models_;
  LoadThread loader_;  // every load runs on it: whoever asks, one thread's state stays
};

}  // namespace torchship::serving
