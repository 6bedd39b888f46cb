// The AOTInductor backend: .pt2 packages written by torch.export + AOTInductor
// (torchship.export(format="aoti"), or torch._inductor.aoti_compile_and_package).
#include "backends/backend.h"
#include "backends/compiled_package.h"
#include "core/text.h"
#include "core/torch_compat.h"
#include "platform/library_stubs.h"
#include "torchship/error.h"

#ifdef TORCHSHIP_HAVE_AOTI
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string_view>

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/inductor/aoti_runner/model_container_runner_cpu.h>

#include "archive/memory_file.h"
#include "backends/exported_call.h"
#include "backends/package_worker.h"
#include "backends/updated_weights.h"
#include "platform/cpu_features.h"
#include "platform/runtime_defaults.h"
#include "torchship/json_input.h"
#include "torchship/limits.h"
#include "torchship/tensor_json.h"
#include "torchship/value_tree.h"
#include "torchship/weights_update.h"
#endif

namespace torchship::backends {

#ifndef TORCHSHIP_HAVE_AOTI

std::unique_ptr<CompiledPackage> open_compiled_package(const Archive& archive,
                                                       const c10::Device& device, int) {
  open_aoti(archive, device, 1);  // throws, saying why
  return nullptr;
}

std::unique_ptr<Backend> open_aoti(const Archive& archive, const c10::Device&, int) {
  throw unsupported("cannot load " + archive.path().string() +
                    ": it is an AOTInductor package (.pt2), and this torchship was built against "
                    "libtorch " +
                    compat::libtorch_version() +
                    ", which has no AOTInductor runtime (2.6 or newer has); run it with a "
                    "torchship built against PyTorch 2.x, or export the model as TorchScript");
}

#else

namespace {

constexpr const char* kModelFolder = "data/aotinductor/model/";

// What AOTInductor recorded about the compiled code (AOTI_DEVICE_KEY, AOTI_CPU_ISA, ...), read
// from the package without loading its library.
std::map<std::string, std::string> compiled_metadata(const Archive& archive) {
  std::map<std::string, std::string> metadata;
  for (const auto& record : archive.records()) {
    if (record.rfind(kModelFolder, 0) != 0) continue;
    if (record.size() < 13 || record.compare(record.size() - 13, 13, "metadata.json") != 0) {
      continue;
    }
    auto text = archive.read_record(record);
    if (!text) continue;
    auto document = parse_json(*text, record);
    if (!document.is_object() || !document.contains("AOTI_DEVICE_KEY")) continue;
    for (const auto& [key, value] : document.items()) {
      if (value.is_string()) metadata[key] = value.get<std::string>();
    }
    return metadata;
  }
  return metadata;
}

// The CPU features AOTInductor's vector ISA needs, for packages without torchship's manifest.
std::vector<std::string> features_of_vec_isa(const std::string& isa) {
  std::vector<std::string> features;
  std::istringstream words(isa);
  for (std::string word; words >> word;) {
    // AOTInductor records the ISA upper case ("AVX512 AVX512_VNNI").
    word = lowercase(word);
    if (word == "avx2") features.insert(features.end(), {"avx2", "fma"});
    if (word == "avx512") {
      features.insert(features.end(), {"avx512f", "avx512bw", "avx512dq", "avx512vl"});
    }
    if (word == "avx512_vnni" || word == "amx_tile") features.push_back(word);
  }
  return features;
}

std::string this_machine() {
#if defined(__linux__)
  std::string platform = "linux";
#elif defined(_WIN32)
  std::string platform = "win32";
#else
  std::string platform = "other";
#endif
#if defined(__x86_64__) || defined(_M_X64)
  return platform + "/x86_64";
#elif defined(__aarch64__)
  return platform + "/aarch64";
#else
  return platform + "/other";
#endif
}

// Refuses, in one line, a package this machine cannot run: another platform or device, or
// instructions this CPU lacks (running them would end the process with SIGILL).
void check_runnable(const Archive& archive, const std::map<std::string, std::string>& metadata,
                    const c10::Device& device) {
  const std::string path = archive.path().string();
  auto value = [&](const char* key) {
    auto it = metadata.find(key);
    return it == metadata.end() ? std::string() : it->second;
  };
  std::string compiled_on = value("AOTI_PLATFORM") + "/" + value("AOTI_MACHINE");
  if (compiled_on != "/" && compiled_on != this_machine()) {
    throw unsupported("cannot load " + path + ": the package was compiled for " + compiled_on +
                      ", this machine is " + this_machine() + "; export it on (or for) this one");
  }
  std::string device_key = value("AOTI_DEVICE_KEY");
  std::string wanted = device.is_cuda() ? "cuda" : "cpu";
  if (!device_key.empty() && device_key != wanted) {
    throw unsupported("cannot load " + path + ": the package was compiled for " + device_key +
                      ", not " + wanted + "; run it with --device " + device_key +
                      ", or export it again on " + wanted);
  }
  if (!device.is_cpu()) return;
  const auto& manifest = archive.manifest();
  bool recorded = manifest && !manifest->exported.cpu.target.empty();
  std::vector<std::string> required =
      recorded ? manifest->exported.cpu.features : features_of_vec_isa(value("AOTI_CPU_ISA"));
  auto missing = missing_cpu_features(required);
  if (missing.empty()) return;
  std::string target = recorded ? manifest->exported.cpu.target : "native";
  std::string advice = target == "x86-64-v3" || target == "x86-64-v2"
                           ? "cpu_target=\"x86-64-v2\""
                           : "cpu_target=\"x86-64-v3\" (AVX2) or \"x86-64-v2\" for older CPUs";
  throw unsupported("cannot load " + path + ": the package was compiled for a CPU with " +
                    join(missing) + " (target " + target +
                    "), which this CPU lacks; running it would crash (illegal instruction); "
                    "export it again with " +
                    advice);
}

// The loader unpacks a package into a temporary folder ("aotinductor_XXXXXX") that it removes
// when it is destroyed, but not when its constructor throws: after a failed load, torchship
// removes the folders made since `started` that hold this package's model. Only failures pay
// for the scan.
void remove_unpacked_since(std::filesystem::file_time_type started, const Archive& archive) {
  namespace fs = std::filesystem;
  std::string library;
  for (const auto& record : archive.records()) {
    if (record.rfind(kModelFolder, 0) == 0 && record.size() > 3 &&
        record.compare(record.size() - 3, 3, ".so") == 0) {
      library = record;
    }
  }
  if (library.empty()) return;
  std::error_code ec;
  for (const auto& folder : fs::directory_iterator(fs::temp_directory_path(ec), ec)) {
    if (folder.path().filename().string().rfind("aotinductor_", 0) != 0 ||
        fs::last_write_time(folder.path(), ec) < started) {
      continue;
    }
    for (const auto& entry : fs::directory_iterator(folder.path(), ec)) {
      if (fs::exists(entry.path() / library, ec)) {
        fs::remove_all(folder.path(), ec);
        break;
      }
    }
  }
}

using Loader = torch::inductor::AOTIModelPackageLoader;
using Runner = torch::inductor::AOTIModelContainerRunner;

// One compiled model of a package, and the runner that runs it.
struct CompiledModel {
  // Another model's constants this one runs with (share_constants), alive as long as its runner.
  std::unordered_map<std::string, at::Tensor> shared_constants;
  std::unique_ptr<Loader> loader;         // set when AOTInductor's package loader opened it
  std::unique_ptr<Runner> memory_runner;  // set when it was loaded from memory
  Runner& runner() const { return loader ? *loader->get_runner() : *memory_runner; }
};

// A package's compiled models, loaded: the one for any batch size and those compiled for a
// static batch size (export.static_batches).
struct LoadedPackage {
  struct StaticModel {
    StaticBatchModel batch;
    CompiledModel compiled;
  };
  CompiledModel model;  // before the static models: they may run on its constants
  std::vector<StaticModel> static_models;
};

// The records of model `name` when they are all a CPU runner needs: the package's one compiled
// library, with the weights inside (the default) or in one weights blob beside it
// (swappable_weights), and no extern-kernel description or constants folder. An empty library
// otherwise: AOTInductor's package loader then opens it.
struct MemoryModel {
  std::string library;
  std::string weights;  // "" when the library holds them
};

MemoryModel memory_model(const Archive& archive, const std::string& name) {
  const std::string folder = "data/aotinductor/" + name + "/";
  std::vector<std::string> libraries, blobs;
  for (const auto& record : archive.records()) {
    auto ends_with = [&](std::string_view end) {
      return record.size() >= end.size() &&
             record.compare(record.size() - end.size(), end.size(), end) == 0;
    };
    if (record.rfind("data/constants/", 0) == 0) return {};
    if (record.rfind(folder, 0) != 0) continue;
    if (ends_with(".wrapper.json")) return {};
    if (ends_with(".blob")) blobs.push_back(record);
    if (ends_with(".so")) libraries.push_back(record);
  }
  if (libraries.size() != 1 || blobs.size() > 1) return {};
  // (a blob is read into a runner by update_constant_buffer_from_blob, since libtorch 2.10)
  if (!blobs.empty() && !TORCHSHIP_TORCH_AT_LEAST(2, 10)) return {};
  return {libraries[0], blobs.empty() ? "" : blobs[0]};
}

// A weights blob's bytes go into the runner's constants from an in-memory file closed right
// after: the runner's copy is the only one that stays.
void load_weights_blob(Runner& runner, const Archive& archive, const std::string& record) {
  auto bytes = archive.read_record(record);
  if (!bytes) throw bad_model("cannot load " + archive.path().string() + ": no " + record);
  MemoryFile file = MemoryFile::hold(*bytes, "torchship-aoti-weights");
  bytes.reset();
#if TORCHSHIP_TORCH_AT_LEAST(2, 10)
  runner.update_constant_buffer_from_blob(file.path().string());
#else  // memory_model() leaves such a package to the package loader
  (void)runner;
#endif
}

// Calls `chunk` with the file's bytes, 1 MB at a time, until it returns false.
void read_in_chunks(const std::filesystem::path& path,
                    const std::function<bool(std::string_view)>& chunk) {
  std::ifstream in(path, std::ios::binary);
  std::string buffer(1 << 20, '\0');
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    auto count = static_cast<size_t>(in.gcount());
    if (count == 0 || !chunk({buffer.data(), count})) break;
  }
}

// Whether the file at `path` holds exactly `bytes`.
bool holds_bytes(const std::filesystem::path& path, std::string_view bytes) {
  size_t offset = 0;
  bool same = true;
  read_in_chunks(path, [&](std::string_view chunk) {
    same = bytes.compare(offset, chunk.size(), chunk) == 0;
    offset += chunk.size();
    return same;
  });
  return same && offset == bytes.size();
}

// The anonymous in-memory files that hold compiled libraries, one per distinct library. A file
// a library was loaded from stays open for the process's life: dlopen knows a library by its
// path, and a library's thread-local destructors keep it mapped (see kept_or_opened), so a closed
// file would hand its descriptor's number, its path, to the next library, which dlopen would
// take for the old one. The same bytes loaded again get the same file, and dlopen the library
// already mapped: reloading a package maps nothing new.
class LibraryFiles {
 public:
  static LibraryFiles& instance() {
    static LibraryFiles files;
    return files;
  }

  MemoryFile find_or_hold(const std::string& bytes) {
    size_t key = std::hash<std::string_view>()(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    auto [first, last] = files_.equal_range(key);
    for (auto it = first; it != last; ++it) {
      if (holds_bytes(it->second.path(), bytes)) return it->second;
    }
    return files_.emplace(key, MemoryFile::hold(bytes, "torchship-aoti-library", true))->second;
  }

  // A file no library could be loaded from: nothing maps it, it may go.
  void forget(const MemoryFile& file) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = files_.begin(); it != files_.end(); ++it) {
      if (it->second.path() == file.path()) {
        files_.erase(it);
        return;
      }
    }
  }

 private:
  std::mutex mutex_;
  std::multimap<size_t, MemoryFile> files_;  // by a hash of their bytes
};

// A runner of the library loaded from an in-memory file: nothing is unpacked to the temporary
// folder. Throws when the library does not load from there.
std::unique_ptr<Runner> runner_from_memory(const Archive& archive, const std::string& library,
                                           int concurrent_forwards) {
  auto bytes = archive.read_record(library);
  if (!bytes) throw bad_model("cannot load " + archive.path().string() + ": no " + library);
  MemoryFile file = LibraryFiles::instance().find_or_hold(*bytes);
  bytes.reset();
  size_t runners = static_cast<size_t>(std::max(1, concurrent_forwards));
  try {
#if TORCHSHIP_TORCH_AT_LEAST(2, 7)
    return std::make_unique<torch::inductor::AOTIModelContainerRunnerCpu>(
        file.path().string(), runners, /*run_single_threaded=*/false);
#else  // 2.6's runner has no single-threaded mode
    return std::make_unique<torch::inductor::AOTIModelContainerRunnerCpu>(file.path().string(),
                                                                          runners);
#endif
  } catch (const std::exception&) {
    LibraryFiles::instance().forget(file);
    throw;
  }
}

// `with_weights`: false for a model that will run with another's constants (share_constants):
// its own are then never read into memory.
CompiledModel open_model(const Archive& archive, const std::string& name, const c10::Device& device,
                         int concurrent_forwards, bool with_weights = true) {
  CompiledModel model;
  MemoryModel in_memory = device.is_cpu() ? memory_model(archive, name) : MemoryModel{};
  if (!in_memory.library.empty()) {
    // Where the library does not load from memory (a kernel that refuses to run code from an
    // in-memory file, a broken library), the package loader tries, and says why it fails.
    try {
      model.memory_runner = runner_from_memory(archive, in_memory.library, concurrent_forwards);
      if (!in_memory.weights.empty() && with_weights) {
        load_weights_blob(*model.memory_runner, archive, in_memory.weights);
      }
      return model;
    } catch (const std::exception&) {
      model.memory_runner.reset();
    }
  }
  const std::string path = archive.file().string();
#if TORCHSHIP_TORCH_AT_LEAST(2, 7)
  model.loader = std::make_unique<Loader>(
      path, name, /*run_single_threaded=*/false,
      static_cast<size_t>(std::max(1, concurrent_forwards)),
      static_cast<c10::DeviceIndex>(device.is_cuda() ? std::max<int>(0, device.index()) : -1));
#else  // 2.6: one runner, the current device
  (void)concurrent_forwards;
  model.loader = std::make_unique<Loader>(path, name);
#endif
  return model;
}

// Whether the package's models hold the module's weights as they are (swappable_weights: not
// frozen, so neither folded nor prepacked for each model's sizes): its static-batch models can
// then run with the dynamic model's constants.
bool weights_as_exported(const Archive& archive) {
  auto text = archive.read_extra(kWeightsIndexFile);
  if (!text) return false;
  auto index = nlohmann::json::parse(*text, nullptr, false);
  return index.is_object() && !index.value("frozen", true);
}

// A static model runs with the dynamic model's constants, not a copy of its own: one copy of
// the weights in memory, whatever the number of static batch sizes.
void share_constants(CompiledModel& fixed, const CompiledModel& dynamic, const Archive& archive) {
#if TORCHSHIP_TORCH_AT_LEAST(2, 7)
  auto source = dynamic.runner().extract_constants_map(false);  // by qualified name
  for (const auto& [name, qualified] : fixed.runner().getConstantNamesToOriginalFQNs()) {
    auto found = source.find(qualified);
    if (found == source.end()) {
      throw bad_model("cannot load " + archive.path().string() + ": its static model's constant '" +
                      qualified + "' is not one of the dynamic model's");
    }
    fixed.shared_constants[name] = found->second;
  }
  fixed.runner().update_constant_buffer(fixed.shared_constants, /*use_inactive=*/false,
                                        /*validate_full_updates=*/true, /*user_managed=*/true);
#else
  (void)fixed, (void)dynamic, (void)archive;
#endif
}

std::shared_ptr<LoadedPackage> open_package(const Archive& archive, const c10::Device& device,
                                            int concurrent_forwards) {
  const std::string path = archive.path().string();
  // (a second early: the folder's time may be rounded down)
  auto started = std::filesystem::file_time_type::clock::now() - std::chrono::seconds(1);
  satisfy_libtorch_dependency();  // the package's library lists libtorch.so as needed
  auto package = std::make_shared<LoadedPackage>();
  try {
    compat::DiscardWarnings discard;
    compat::WarningHandlerGuard quiet(&discard);
    package->model = open_model(archive, "model", device, concurrent_forwards);
    bool share = TORCHSHIP_TORCH_AT_LEAST(2, 7) && weights_as_exported(archive);
    if (archive.manifest()) {
      for (const auto& fixed : archive.manifest()->exported.static_batches) {
        CompiledModel compiled =
            open_model(archive, fixed.model, device, concurrent_forwards, /*with_weights=*/!share);
        if (share) share_constants(compiled, package->model, archive);
        package->static_models.push_back({fixed, std::move(compiled)});
      }
    }
  } catch (const std::exception& e) {
    remove_unpacked_since(started, archive);
    throw bad_model("cannot load " + path + ": " + first_line(e));
  }
  return package;
}

// What a package holds, for recognizing it when it is loaded again: its size and a hash of all
// its bytes (the same file replaced by another, or renamed, is another package).
std::string content_key(const std::filesystem::path& path) {
  size_t hash = 0, size = 0;
  read_in_chunks(path, [&](std::string_view chunk) {
    size += chunk.size();
    hash = hash * 1099511628211ULL ^ std::hash<std::string_view>()(chunk);
    return true;
  });
  return std::to_string(size) + ":" + std::to_string(hash);
}

// A package's compiled library stays mapped after its loader is destroyed: it registers
// thread-local destructors (__cxa_thread_atexit) in each thread that runs it, and glibc does
// not unload a library while such a thread lives; a server's threads live as long as it does.
// Loaded from memory (CPU), a library is mapped once per distinct library (LibraryFiles), so a
// package loaded again costs its load, not memory. Through AOTInductor's package loader (CUDA,
// custom operators) each load maps another copy, its weights included. With
// RuntimeOptions::keep_compiled_packages, a package loaded again with the same content, device
// and runners while one is loaded gets that one; a package the package loader opened is kept
// for the process's life (a later load gets it), one loaded from memory only while a model
// holds it: each new version of a retrained model is new content, and keeping those kept each
// version's weights (measured: +1.7 MB per version of the Fashion-MNIST package, 100 versions
// +58%). Kept packages are freed at exit, which removes their unpacked folders.
std::shared_ptr<const LoadedPackage> kept_or_opened(const Archive& archive,
                                                    const c10::Device& device,
                                                    int concurrent_forwards) {
  struct Kept {
    std::weak_ptr<const LoadedPackage> package;
    std::shared_ptr<const LoadedPackage> for_good;  // set when the package loader opened it
  };
  static std::mutex mutex;
  static std::map<std::string, Kept> kept;
  std::string key =
      content_key(archive.file()) + " " + device.str() + " " + std::to_string(concurrent_forwards);
  std::lock_guard<std::mutex> lock(mutex);
  auto found = kept.find(key);
  if (found != kept.end()) {
    if (auto package = found->second.package.lock()) return package;
  }
  std::shared_ptr<const LoadedPackage> package = open_package(archive, device, concurrent_forwards);
  bool from_memory = package->model.memory_runner != nullptr;
  kept[key] = {package, from_memory ? nullptr : package};
  std::erase_if(kept, [](const auto& entry) { return entry.second.package.expired(); });
  return package;
}

// A weights update laid over the archive (WeightsUpdate::over) is copied into the runner's
// constants in place, each found by the name the module gave it (a package compiled with
// swappable_weights keeps them all): no second buffer, and the static-batch models that share
// them see them too. A tensor the compiled code does not read (torch.export drops unused buffers,
// such as batch norm's num_batches_tracked) is passed over; constants the update does not name
// (tensors the code itself made) stay.
void take_updated_weights(Runner& runner, const Archive& archive,
                          const std::vector<NamedWeight>& weights) {
#if TORCHSHIP_TORCH_AT_LEAST(2, 7)
  auto current = runner.extract_constants_map(false);  // by qualified name, views of the buffer
  std::vector<std::pair<at::Tensor, at::Tensor> > copies;
  for (const auto& weight : weights) {
    auto own = current.find(weight.name);
    if (own == current.end()) continue;
    check_same_kind(archive, weight, own->second);
    copies.emplace_back(own->second, weight.tensor);
  }
  if (copies.empty()) {
    throw weights_refused(archive,
                          "its compiled model has none of the update's tensors as "
                          "constants (compiled with frozen weights? export with "
                          "swappable_weights=True)");
  }
  at::NoGradGuard no_grad;
  for (auto& [constant, weight] : copies) constant.copy_(weight);
#else
  (void)runner, (void)weights;
  throw weights_refused(archive,
                        "AOTInductor's runtime before libtorch 2.7 cannot replace "
                        "a package's constants");
#endif
}

// A package whose constants a weights update replaces is opened afresh: kept packages are
// shared with every model loaded from the same bytes. Its compiled library is the one already
// mapped where it loads from memory (LibraryFiles): nothing is compiled or mapped again.
std::shared_ptr<const LoadedPackage> open_updated(const Archive& archive,
                                                  const std::vector<NamedWeight>& weights,
                                                  const c10::Device& device,
                                                  int concurrent_forwards) {
  auto package = open_package(archive, device, concurrent_forwards);
  try {
    take_updated_weights(package->model.runner(), archive, weights);
    for (auto& fixed : package->static_models) {
      if (fixed.compiled.shared_constants.empty()) {  // else it has the new ones already
        take_updated_weights(fixed.compiled.runner(), archive, weights);
      }
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw weights_refused(archive, first_line(e));
  }
  return package;
}

// A package opened in this process: its compiled libraries are mapped here.
class OpenedPackage final : public CompiledPackage {
 public:
  OpenedPackage(const Archive& archive, const c10::Device& device, int concurrent_forwards) {
    check_runnable(archive, compiled_metadata(archive), device);
    auto weights = updated_weights(archive);
    package_ = !weights.empty() ? open_updated(archive, weights, device, concurrent_forwards)
               : keep_compiled_packages() ? kept_or_opened(archive, device, concurrent_forwards)
                                          : open_package(archive, device, concurrent_forwards);
    Runner& runner = package_->model.runner();
    auto spec = runner.get_call_spec();
    if (spec.size() != 2) {
      throw bad_model("cannot load " + archive.path().string() + ": it has no call spec");
    }
    spec_ = {spec[0], spec[1]};
    summary_.methods = {"forward"};
    try {
      for (const auto& [name, tensor] : runner.extract_constants_map(false)) {
        summary_.parameter_count += tensor.numel();
        summary_.parameter_bytes += static_cast<int64_t>(tensor.nbytes());
      }
    } catch (const std::exception&) {
      // Older runtimes cannot list constants; the summary then shows none.
    }
  }

  const CallSpec& call_spec() const override { return spec_; }
  ModelSummary summary() const override { return summary_; }
  std::string where() const override { return ""; }

  std::vector<at::Tensor> run(int model, std::vector<at::Tensor> inputs) const override {
    bool fixed = model >= 0 && static_cast<size_t>(model) < package_->static_models.size();
    Runner& runner =
        fixed ? package_->static_models[model].compiled.runner() : package_->model.runner();
    return runner.run(inputs);
  }

 private:
  std::shared_ptr<const LoadedPackage> package_;
  CallSpec spec_;
  ModelSummary summary_;
};

// Whether a package runs in a worker process (RuntimeOptions::package_workers): on CPU (a worker
// takes and gives tensors in host memory). A weights update over it runs here, as its library
// is the one every version shares.
bool runs_in_worker(const Archive& archive, const c10::Device& device) {
  PackageWorkers workers = package_workers();
  bool updated = archive.read_extra(kWeightsUpdateFile).has_value();  // (not its tensors)
  if (workers == PackageWorkers::Off || !device.is_cpu() || updated) {
    return false;
  }
  return workers == PackageWorkers::All || !weights_as_exported(archive);
}

class AotiBackend final : public Backend {
 public:
  AotiBackend(std::unique_ptr<CompiledPackage> package, const Archive& archive)
      : package_(std::move(package)),
        static_models_(archive.manifest() ? archive.manifest()->exported.static_batches
                                          : std::vector<StaticBatchModel>()),
        call_(package_->call_spec().inputs, package_->call_spec().outputs, archive.manifest(),
              archive.path().string()) {}

  ModelFormat format() const override { return ModelFormat::AOTInductor; }
  const Signature& signature() const override { return call_.signature(); }
  ModelSummary summary() const override { return package_->summary(); }

  c10::IValue run(std::vector<c10::IValue> inputs) const override {
    return call_.unflatten(
        package_->run(static_model_for(static_models_, inputs), call_.flatten(inputs)));
  }

  RunFailure explain(const std::exception& error) const override {
    return failure_because(first_line(error));
  }

  bool optimizes() const override { return false; }
  bool optimize(const CandidateProbe&, OptimizationReport& report,
                std::vector<std::string>& notes) override {
    std::vector<int64_t> static_batches;
    for (const auto& fixed : static_models_) static_batches.push_back(fixed.batch);
    return keep_as_compiled(
        "compiled ahead of time by AOTInductor: nothing to optimize at load" + package_->where(),
        "compiled for static batch size", static_batches, report, notes);
  }

 private:
  std::unique_ptr<CompiledPackage> package_;
  std::vector<StaticBatchModel> static_models_;  // the manifest's, in the package's order
  ExportedCall call_;
};

// Compiled code trusts its inputs' sizes, strides and dtypes unless this variable is set when it
// first runs (then each input is checked against the shapes it was compiled for): without it, a
// tensor of another size is read out of bounds. Set once, and only when the application did not
// set it; an application that loads packages while other threads run (setenv races with getenv)
// sets it itself before starting them. A worker process inherits it.
void check_inputs_in_compiled_code() {
  static std::once_flag checks_on;
  std::call_once(checks_on, [] {
    if (!std::getenv("AOTI_RUNTIME_CHECK_INPUTS")) setenv("AOTI_RUNTIME_CHECK_INPUTS", "1", 0);
  });
}

}  // namespace

std::unique_ptr<CompiledPackage> open_compiled_package(const Archive& archive,
                                                       const c10::Device& device,
                                                       int concurrent_forwards) {
  check_inputs_in_compiled_code();
  return std::make_unique<OpenedPackage>(archive, device, concurrent_forwards);
}

std::unique_ptr<Backend> open_aoti(const Archive& archive, const c10::Device& device,
                                   int concurrent_forwards) {
  check_inputs_in_compiled_code();
  auto package = runs_in_worker(archive, device)
                     ? open_package_in_worker(archive, device, concurrent_forwards)
                     : open_compiled_package(archive, device, concurrent_forwards);
  return std::make_unique<AotiBackend>(std::move(package), archive);
}

#endif

}  // namespace torchship::backends
