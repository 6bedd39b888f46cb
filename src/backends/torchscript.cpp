// The TorchScript backend: archives written by torch.jit.save (torchship.export's default).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include <torch/csrc/jit/runtime/operator.h>

#include "backends/backend.h"
#include "backends/forward_timing.h"
#include "backends/prepacked_convolutions.h"
#include "backends/updated_weights.h"
#include "core/text.h"
#include "core/torch_compat.h"
#include "torchship/error.h"
#include "torchship/extensions.h"
#include "torchship/value_tree.h"

namespace torchship::backends {
namespace {

// The operator a failed load names ("torchvision::nms"), or "" when the failure is another.
std::string missing_operator(const std::string& message) {
  static const std::string kMarker = "Unknown builtin op: ";
  auto at = message.find(kMarker);
  if (at == std::string::npos) return "";
  auto begin = at + kMarker.size();
  auto end = message.find_first_of(".\n ", begin);
  return message.substr(begin, end - begin);
}

std::string full_text(const std::exception& error) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  return c10_error ? c10_error->what_without_backtrace() : error.what();
}

// The last line of a text, which in a TorchScript error says what happened.
std::string last_line(const std::string& text) {
  auto end = text.find_last_not_of("\n ");
  if (end == std::string::npos) return "";
  auto begin = text.rfind('\n', end);
  return text.substr(begin == std::string::npos ? 0 : begin + 1,
                     end - (begin == std::string::npos ? 0 : begin + 1) + 1);
}

// TorchScript errors carry the script traceback; the last line says what happened.
std::string script_error_summary(const std::exception& error) {
  std::string text = full_text(error);
  if (text.find("Traceback of TorchScript") == std::string::npos) return first_line(error);
  std::string last = last_line(text);
  // "builtins.ValueError: message" -> "message"
  auto colon = last.find(": ");
  if (colon != std::string::npos && last.substr(0, colon).find("Error") != std::string::npos) {
    last = last.substr(colon + 2);
  }
  return last;
}

// Whether a forward failure says that the input's values were wrong: libtorch's IndexError,
// ValueError and TypeError (an index out of range, a value an operator does not take), or the
// same raised by the model's own code (`raise ValueError(...)` in TorchScript).
bool blames_the_values(const std::exception& error) {
  if (dynamic_cast<const c10::IndexError*>(&error) ||
      dynamic_cast<const c10::ValueError*>(&error) || dynamic_cast<const c10::TypeError*>(&error)) {
    return true;
  }
  std::string last = last_line(full_text(error));
  for (const char* kind : {"IndexError: ", "ValueError: ", "TypeError: "}) {
    auto at = last.find(kind);
    if (at != std::string::npos && (at == 0 || last.compare(0, at, "builtins.") == 0)) return true;
  }
  // The TorchScript interpreter reports ATen's IndexError as a RuntimeError: its words remain.
  return last.find("index out of range") != std::string::npos ||
         last.find("out of bounds for dimension") != std::string::npos;
}

// Whether `exported` ("2.14.1+cu130", as the manifest records torch.__version__) is a newer
// release than the libtorch running here; false when it cannot tell.
bool newer_than_this_libtorch(const std::string& exported) {
  int major = 0, minor = 0, patch = 0;
  if (std::sscanf(exported.c_str(), "%d.%d.%d", &major, &minor, &patch) < 2) return false;
  return std::make_tuple(major, minor, patch) >
         std::make_tuple(TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH);
}

// Whether any operator of namespace `ns` ("aten", "prim", "torchvision") is registered: an
// unknown operator of a namespace libtorch itself fills comes from a newer libtorch, one of an
// absent namespace from a library not loaded.
bool namespace_registered(const std::string& ns) {
  std::string prefix = ns + "::";
  for (const auto& op : torch::jit::getAllOperators()) {
    if (op->schema().name().rfind(prefix, 0) == 0) return true;
  }
  return false;
}

// Why an archive from a newer torch does not load here, and what to do, for the messages below.
std::string version_advice(const Archive& archive) {
  std::string exported;
  if (archive.manifest()) exported = archive.manifest()->exported.torch_version;
  std::string here = compat::libtorch_version();
  std::string from = exported.empty() ? "a newer torch" : "torch " + exported;
  return "the archive was exported with " + from + "; run it with a torchship built against " +
         (exported.empty() ? std::string("that libtorch") : "libtorch " + exported) +
         ", or export it again with torch " + here;
}

torch::jit::Module load_module(const Archive& archive, const c10::Device& device) {
  const std::string path = archive.path().string();
  const std::string here = "this libtorch (" + compat::libtorch_version() + ")";
  bool torchvision_tried = false;
  while (true) {
    try {
      return torch::jit::load(archive.file().string(), device);
    } catch (const std::exception& e) {  // c10::Error, or torch::jit::ErrorReport
      std::string message = full_text(e);
      std::string op = missing_operator(message);
      if (op.empty()) {
        std::string why = first_line(e);
        const auto& manifest = archive.manifest();
        if (manifest && newer_than_this_libtorch(manifest->exported.torch_version)) {
          throw bad_model("cannot load " + path + ": " + here + " cannot read it (" + why + "); " +
                          version_advice(archive));
        }
        throw bad_model("cannot load " + path + ": " + why);
      }
      std::string ns = op.substr(0, op.find("::"));
      if (ns == "torchvision" && !torchvision_tried) {
        torchvision_tried = true;
        if (auto library = find_torchvision_ops()) {
          load_extension(*library);
          continue;
        }
      }
      if (ns != "torchvision" && namespace_registered(ns)) {
        throw bad_model("cannot load " + path + ": the model calls operator " + op + ", which " +
                        here + " does not have; " + version_advice(archive));
      }
      std::string provider =
          ns == "torchvision"
              ? "torchvision's operator library (the torchvision built for this libtorch: "
                "python3-torchvision for Debian's, the wheel's torchvision for a PyPI torch, or "
                "libtorchvision), which was not found; install it, set "
                "TORCHSHIP_TORCHVISION_OPS, or pass it with --extension PATH"
              : "a custom-operator library registering namespace '" + ns +
                    "'; pass it with --extension PATH";
      throw bad_model("cannot load " + path + ": the model calls operator " + op +
                      ", which no loaded library provides; it comes from " + provider);
    }
  }
}

// int8 archives run on the kernel library they were quantized for (fbgemm, oneDNN, qnnpack):
// packed weights of one cannot run on another. The engine is process-wide.
void select_quantized_engine(const Manifest& manifest) {
  const std::string& wanted = manifest.exported.quantized_engine;
  if (manifest.precision != "int8" || wanted.empty()) return;
  std::string available;
  for (at::QEngine engine : at::globalContext().supportedQEngines()) {
    std::string name = lowercase(c10::toString(engine));
    if (name == wanted) {
      at::globalContext().setQEngine(engine);
      return;
    }
    if (engine != at::QEngine::NoQEngine) available += (available.empty() ? "" : ", ") + name;
  }
  std::string by = manifest.exported.torch_version.empty()
                       ? ""
                       : " with torch " + manifest.exported.torch_version;
  throw unsupported("this int8 archive was quantized" + by + " for the " + wanted +
                    " engine, which this libtorch (" + compat::libtorch_version() +
                    ") lacks (it has: " + available +
                    "); export it again on a torch that has one of those");
}

Signature signature_of(const torch::jit::Module& module, const std::string& path) {
  auto method = module.find_method("forward");
  if (!method) throw bad_model("cannot load " + path + ": the module has no forward method");
  const c10::FunctionSchema& schema = method->function().getSchema();
  Signature signature;
  for (size_t i = 1; i < schema.arguments().size(); ++i) {  // 0 is self
    const auto& argument = schema.arguments()[i];
    signature.inputs.push_back(
        {argument.name(), argument.type(), argument.default_value().has_value()});
    if (!argument.default_value()) signature.required_inputs = signature.inputs.size();
  }
  signature.output_type = schema.returns().size() == 1
                              ? schema.returns()[0].type()
                              : c10::TupleType::create(c10::fmap(
                                    schema.returns(), [](const auto& r) { return r.type(); }));
  return signature;
}

ModelSummary summarize(const torch::jit::Module& module) {
  ModelSummary summary;
  for (const auto& method : module.get_methods()) summary.methods.push_back(method.name());
  for (const auto& parameter : module.parameters(/*recurse=*/true)) {
    summary.parameter_count += parameter.numel();
    summary.parameter_bytes += static_cast<int64_t>(parameter.nbytes());
  }
  for (const auto& buffer : module.buffers(/*recurse=*/true)) {
    summary.parameter_bytes += static_cast<int64_t>(buffer.nbytes());
  }
  return summary;
}

// Kept only when its forward takes less than this share of the stored module's: the timings
// of a few runs are noisy by a few percent, and an equal candidate gains nothing.
constexpr double kKeepBelow = 0.97;

// One optimization of a stored module, ready to verify.
struct Candidate {
  std::string name;
  torch::jit::Module module;
  bool prepacked = false;   // runs prepacked convolutions (channels-last outputs)
  std::string description;  // for notes: "frozen, 36 convolutions run on prepacked oneDNN weights"
};

// A module's bytes, from which each candidate gets a copy of its own (separate_copy).
std::string saved_bytes(const torch::jit::Module& module) {
  std::ostringstream bytes;
  module.save(bytes);
  return std::move(bytes).str();
}

// A copy of the module in a compilation unit of its own. Freezing clones the module's types and
// methods into its compilation unit with the weights inlined as constants, and that unit lives
// as long as any module in it: a candidate frozen from the stored module itself would keep its
// copy of the weights for the life of the model, chosen or not.
torch::jit::Module separate_copy(const std::string& saved, const c10::Device& device) {
  std::istringstream bytes(saved);
  return torch::jit::load(bytes, device);
}

// Candidate `name` built from (a separate copy of) `stored`, or nullopt (with `why`) when it
// would change nothing.
std::optional<Candidate> build(const std::string& name, const std::string& stored,
                               const c10::Device& device, std::string& why) {
  Candidate candidate;
  candidate.name = name;
  if (name == "prepacked" && !device.is_cpu()) {
    why = "prepacked oneDNN convolutions run on the CPU only";
    return std::nullopt;
  }
  candidate.module = torch::jit::freeze(separate_copy(stored, device));
  if (name == "prepacked") {
    if (!can_prepack_convolutions()) {
      why = "this libtorch has no prepacked oneDNN convolutions";
      return std::nullopt;
    }
    int packed = prepack_convolutions(candidate.module);
    if (packed == 0) {
      why = "no 2-D convolution with constant weights to pack";
      return std::nullopt;
    }
    candidate.prepacked = true;
    candidate.description =
        "frozen, " + std::to_string(packed) + " convolutions run on prepacked oneDNN weights";
  } else if (name == "optimize_for_inference") {
    // optimize_for_inference rewrites the frozen module's graph in place.
    candidate.module = torch::jit::optimize_for_inference(candidate.module);
    candidate.description = "frozen + optimize_for_inference";
  } else {
    // Freezing alone inlines the weights and folds constants, which usually computes the same
    // numbers, and still saves the attribute lookups.
    candidate.description = "frozen only";
  }
  return candidate;
}

std::string milliseconds(double ms) {
  return c10::str(std::round(ms * 100) / 100) + " ms";
}

// One note: what runs, the times it was chosen by, and what the other candidates came to.
std::string describe_choice(const OptimizationReport& report, const std::string& kept,
                            const std::string& against, const std::string& freeze_failure) {
  const bool timed = report.stored_ms > 0;
  const OptimizationTrial* chosen = nullptr;
  bool any_verified = false;
  std::string first_miss, others;
  for (const auto& trial : report.trials) {
    any_verified = any_verified || (trial.applies && trial.miss.empty());
    if (trial.candidate == report.chosen) {
      chosen = &trial;
      continue;
    }
    std::string outcome;
    if (!trial.applies) {
      outcome = trial.candidate + ": " + trial.miss;
    } else if (!trial.miss.empty()) {
      outcome = trial.candidate + " misses " + against + " (" + trial.miss + ")";
      if (first_miss.empty()) first_miss = trial.miss;
    } else if (trial.forward_ms > 0) {
      outcome = trial.candidate + " " + milliseconds(trial.forward_ms);
    }
    if (!outcome.empty()) others += "; " + outcome;
  }
  if (timed) others += "; choosing took " + c10::str(std::round(report.seconds * 100) / 100) + " s";
  if (chosen && timed) {
    return "optimized: " + kept + " (" + milliseconds(chosen->forward_ms) + " a forward, " +
           milliseconds(report.stored_ms) + " as stored)" + others;
  }
  if (chosen) return "optimized: " + kept + " (as asked, verified on " + against + ")" + others;
  if (any_verified) {
    return "not optimized: the module as stored is the fastest (" + milliseconds(report.stored_ms) +
           " a forward)" + others;
  }
  if (!freeze_failure.empty() && first_miss.rfind("it fails: ", 0) == 0) {
    return "not optimized: the model does not freeze (" + freeze_failure + ")";
  }
  if (first_miss.empty()) return "not optimized: no candidate applies" + others;
  return "not optimized: the optimized module misses " + against + " (" + first_miss +
         "), so the model runs as stored";
}

// The fastest candidate so far that reproduces the reference outputs, while the candidates run.
struct Choice {
  std::optional<Candidate> kept;
  double kept_ms = 0;
  std::string freeze_failure;  // the first failure of freezing or a pass, for the note
};

// Times the stored module's forward into `report`. False, with a note and "stored" chosen, when
// it cannot run the reference inputs here.
bool time_stored(const CandidateProbe& probe, OptimizationReport& report,
                 std::vector<std::string>& notes) {
  try {
    report.stored_ms = best_forward_ms(probe.forward, 2);
  } catch (const std::exception& e) {
    // A module that cannot run its reference inputs here has nothing to optimize; the
    // load's own golden run says why in one line (a bf16 kernel this CPU lacks, say).
    report.chosen = "stored";
    notes.push_back("not optimized: the module as stored fails on " + probe.against + " (" +
                    script_error_summary(e) + ")");
    return false;
  }
  return true;
}

// The stored module's bytes, from which each candidate gets a copy of its own; nullopt, with a
// note and "stored" chosen, when the module cannot be saved again.
std::optional<std::string> bytes_for_candidates(const torch::jit::Module& stored,
                                                OptimizationReport& report,
                                                std::vector<std::string>& notes) {
  try {
    return saved_bytes(stored);
  } catch (const std::exception& e) {
    report.chosen = "stored";
    notes.push_back("not optimized: the module cannot be copied for its candidates (" +
                    first_line(e) + ")");
    return std::nullopt;
  }
}

// A weights update laid over the archive (WeightsUpdate::over) replaces the module's parameters
// and buffers by name, before anything runs: each one the module has, of its dtype and shape.
void take_updated_weights(torch::jit::Module& module, const Archive& archive) {
  auto weights = updated_weights(archive);
  if (weights.empty()) return;
  std::map<std::string, at::Tensor> own;
  for (const auto& parameter : module.named_parameters(true)) {
    own.emplace(parameter.name, parameter.value);
  }
  for (const auto& buffer : module.named_buffers(true)) own.emplace(buffer.name, buffer.value);
  std::set<const c10::TensorImpl*> given;  // a tensor tied under two names is given once
  for (const auto& weight : weights) {
    auto found = own.find(weight.name);
    if (found == own.end()) {
      throw weights_refused(archive, "the model has no tensor '" + weight.name + "'");
    }
    check_same_kind(archive, weight, found->second);
    given.insert(found->second.unsafeGetTensorImpl());
  }
  for (const auto& [name, tensor] : own) {
    if (!given.count(tensor.unsafeGetTensorImpl())) {
      throw weights_refused(archive, "it has no tensor '" + name + "'");
    }
  }
  torch::NoGradGuard no_grad;
  for (const auto& weight : weights) own[weight.name].copy_(weight.tensor);
}

class TorchScriptBackend final : public Backend {
 public:
  TorchScriptBackend(const Archive& archive, const c10::Device& device)
      : module_(load_module(archive, device)), device_(device) {
    take_updated_weights(module_, archive);
    module_.eval();
    signature_ = signature_of(module_, archive.path().string());
    summary_ = summarize(module_);
  }

  ModelFormat format() const override { return ModelFormat::TorchScript; }
  const Signature& signature() const override { return signature_; }
  ModelSummary summary() const override { return summary_; }

  c10::IValue run(std::vector<c10::IValue> inputs) const override {
    c10::IValue output = module_.forward(std::move(inputs));
    if (!prepacked_) return output;
    // Prepacked convolutions return channels-last tensors; a caller reading an output's memory
    // expects the layout the stored module gives: contiguous.
    return map_leaves(output, [](const c10::IValue& leaf) {
      return leaf.isTensor() ? c10::IValue(leaf.toTensor().contiguous()) : leaf;
    });
  }

  RunFailure explain(const std::exception& error) const override {
    RunFailure failure;
    failure.why = script_error_summary(error);
    failure.out_of_memory = says_out_of_memory(failure.why);
    failure.blames_the_values = blames_the_values(error);
    return failure;
  }

  // Freezes and optimizes the module, and keeps the fastest candidate that still reproduces the
  // reference outputs (`probe.miss()` returns "": conv-bn folding and oneDNN kernels change
  // float results, by rounding on most models and by far more on some) and runs faster than the
  // module as stored: a pass that speeds up one architecture slows another (prepacked oneDNN
  // depthwise convolutions on MobileNetV3), so agreement alone does not decide.
  bool optimizes() const override { return true; }

  bool optimize(const CandidateProbe& probe, OptimizationReport& report,
                std::vector<std::string>& notes) override {
    auto started = std::chrono::steady_clock::now();
    torch::jit::Module stored = module_;
    // A rejected candidate must leave no trace (libtorch's warnings) on the user's stderr.
    compat::DiscardWarnings discard;
    compat::WarningHandlerGuard quiet(&discard);
    const bool timing = probe.wanted == "auto";
    report = OptimizationReport();
    if (timing && !time_stored(probe, report, notes)) return false;

    std::optional<std::string> saved = bytes_for_candidates(stored, report, notes);
    if (!saved) return false;
    Choice choice;
    for (const auto& name : kOptimizationCandidates) {
      if (!timing && name != probe.wanted) continue;
      report.trials.push_back(
          run_trial(name, stored, *saved, probe, timing, report.stored_ms, choice));
    }
    const std::optional<Candidate>& kept = choice.kept;
    if (kept) {
      module_ = kept->module;
      prepacked_ = kept->prepacked;
      report.chosen = kept->name;
    } else {
      report.chosen = "stored";
    }
    report.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    notes.push_back(describe_choice(report, kept ? kept->description : "", probe.against,
                                    choice.freeze_failure));
    return kept.has_value();
  }

 private:
  // Candidate `name` built from `stored` and checked against the probe: kept in `choice` when it
  // reproduces the reference outputs and (when timing) runs faster. module_ is `stored` after.
  OptimizationTrial run_trial(const std::string& name, const torch::jit::Module& stored,
                              const std::string& saved, const CandidateProbe& probe, bool timing,
                              double stored_ms, Choice& choice) {
    OptimizationTrial trial;
    trial.candidate = name;
    try {
      std::optional<Candidate> candidate = build(name, saved, device_, trial.miss);
      trial.applies = candidate.has_value();
      if (candidate) {
        module_ = candidate->module;
        prepacked_ = candidate->prepacked;
        trial.miss = probe.miss();
        if (trial.miss.empty() && timing) {
          trial.forward_ms =
              best_forward_ms(probe.forward, 1, choice.kept ? choice.kept_ms : stored_ms);
        }
        bool faster = !timing || (trial.forward_ms < kKeepBelow * stored_ms &&
                                  (!choice.kept || trial.forward_ms < choice.kept_ms));
        if (trial.miss.empty() && faster) {
          choice.kept = std::move(candidate);
          choice.kept_ms = trial.forward_ms;
        }
      }
    } catch (const std::exception& e) {  // freezing or a pass failed on this graph
      trial.miss = "it fails: " + first_line(e);
      if (choice.freeze_failure.empty()) choice.freeze_failure = first_line(e);
    }
    module_ = stored;
    prepacked_ = false;
    return trial;
  }

  mutable torch::jit::Module module_;  // forward is not const in libtorch's API
  c10::Device device_;
  bool prepacked_ = false;  // module_ runs prepacked convolutions
  Signature signature_;
  ModelSummary summary_;
};

}  // namespace

std::unique_ptr<Backend> open_torchscript(const Archive& archive, const c10::Device& device) {
  if (archive.manifest()) select_quantized_engine(*archive.manifest());
  return std::make_unique<TorchScriptBackend>(archive, device);
}

}  // namespace torchship::backends
