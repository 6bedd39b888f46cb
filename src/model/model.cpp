// Model: the facade over a backend (TorchScript, AOTInductor, OpenVINO) and the archive's manifest.
// Loading picks the backend by the archive's format; forward checks inputs, runs the backend
// and says whose fault a failure is.
#include "torchship/model.h"
#include "torchship/runtime.h"

#include <c10/core/InferenceMode.h>

#include "model/engine_choice.h"
#include "model/model_impl.h"
#include "model/signature_checks.h"
#include "platform/device.h"
#include "platform/runtime_defaults.h"
#include "torchship/error.h"
#include "torchship/example_inputs.h"
#include "torchship/extensions.h"
#include "torchship/golden.h"
#include "torchship/memory.h"
#include "torchship/value_tree.h"

namespace torchship {
namespace {

c10::IValue to_device(const c10::IValue& value, const c10::Device& device) {
  if (value.isTensor()) return value.toTensor().to(device);
  // Inputs built on the CPU need no walk; only tensors elsewhere would have to move.
  if (device.is_cpu()) return value;
  return map_leaves(value, [&](const c10::IValue& leaf) {
    return leaf.isTensor() ? c10::IValue(leaf.toTensor().to(device)) : leaf;
  });
}

// "" when the model as it is now reproduces the golden vectors, else the first miss; a model
// that fails to run on them misses too.
std::string golden_miss(const Model& model) {
  GoldenReport report;
  try {
    report = check_golden(model);
  } catch (const Error& e) {
    return std::string("it fails on them: ") + e.what();
  }
  for (const auto& golden_case : report.cases) {
    for (const auto& leaf : golden_case.leaves) {
      if (!leaf.ok) {
        return leaf.path + ": " + leaf.problem + ", max abs error " + c10::str(leaf.max_abs);
      }
    }
  }
  return "";
}

// Inputs are trees of tensors: a deep copy, so that a candidate module runs on exactly what the
// stored one saw even if either writes into its inputs.
std::vector<c10::IValue> deep_copy(const std::vector<c10::IValue>& inputs) {
  std::vector<c10::IValue> copies;
  for (const auto& input : inputs) {
    copies.push_back(map_leaves(input, [](const c10::IValue& leaf) {
      return leaf.isTensor() ? c10::IValue(leaf.toTensor().clone()) : leaf;
    }));
  }
  return copies;
}

// Whether the inputs hold a tensor without elements: such inputs check nothing.
bool without_values(const std::vector<c10::IValue>& inputs) {
  for (const auto& input : inputs) {
    for (const auto& leaf : leaves(input, "input")) {
      if (leaf.value.isTensor() && leaf.value.toTensor().numel() == 0) return true;
    }
  }
  return false;
}

// The tolerance an optimized module is held to without golden vectors: the manifest's
// precision, else the output's own float type (bf16 and fp16 keep 8 and 11 bits).
double reference_rtol(const Manifest* manifest, const c10::IValue& output) {
  if (manifest && manifest->precision != "fp32") return 1e-2;
  double rtol = 1e-4;
  for (const auto& leaf : output_leaves(output, manifest)) {
    if (!leaf.value.isTensor()) continue;
    auto type = leaf.value.toTensor().scalar_type();
    if (type == at::kBFloat16 || type == at::kHalf) rtol = 1e-2;
  }
  return rtol;
}

// "" when the backend, as it is now, reproduces `reference` on `inputs` (what the stored module
// returned for them), else the first difference; failing on them is a miss too.
std::string reference_miss(const backends::Backend& backend, const Manifest* manifest,
                           const std::vector<c10::IValue>& inputs, const c10::IValue& reference) {
  c10::IValue output;
  try {
    c10::InferenceMode guard;
    output = backend.run(deep_copy(inputs));
  } catch (const std::exception& e) {
    return "it fails on them: " + first_line(e);
  }
  return first_difference(reference, output, reference_rtol(manifest, reference), manifest);
}

void check_optimization_name(const std::string& name);

// LoadOptions::precision with "" resolved: the archive's choice.
std::string load_precision(const std::string& asked, const Archive& archive) {
  if (asked != "" && asked != "fp32" && asked != "bf16" && asked != "auto") {
    throw bad_input("precision must be fp32, bf16 or auto, got '" + asked + "'");
  }
  if (!asked.empty()) return asked;
  const auto& manifest = archive.manifest();
  return manifest && manifest->exported.precision == "auto" ? "auto" : "fp32";
}

void check_options(const LoadOptions& options) {
  if (options.concurrent_forwards < 1) {
    throw bad_input("concurrent_forwards must be 1 or more, got " +
                    std::to_string(options.concurrent_forwards));
  }
  if (options.max_image_pixels <= 0) {
    throw bad_input("max_image_pixels must be positive, got " +
                    std::to_string(options.max_image_pixels));
  }
  check_optimization_name(options.optimization);
}

void check_optimization_name(const std::string& name) {
  if (name == "auto" || name == "stored") return;
  for (const auto& candidate : kOptimizationCandidates) {
    if (name == candidate) return;
  }
  std::string known = "auto, stored";
  for (const auto& candidate : kOptimizationCandidates) known += ", " + candidate;
  throw bad_input("unknown optimization '" + name + "': expected one of " + known);
}

}  // namespace

void Model::Impl::optimize(const std::function<std::string()>& miss,
                           const std::vector<c10::IValue>& inputs, const std::string& against) {
  backends::CandidateProbe probe;
  probe.miss = miss;
  probe.forward = [&] {
    c10::InferenceMode guard;
    backend->run(deep_copy(inputs));
  };
  probe.against = against;
  probe.wanted = wanted_optimization;
  optimized = backend->optimize(probe, optimization, notes);
}

void Model::Impl::prepare_optimization(const Model& model) {
  if (!backend->optimizes()) {
    backend->optimize({}, optimization, notes);
    return;
  }
  if (archive.has_golden()) {
    auto inputs = golden_inputs(model);
    for (auto& input : inputs) input = to_device(input, device);
    optimize([&] { return golden_miss(model); }, inputs, "the golden vectors");
    return;
  }
  auto inputs = synthesized_inputs(model);
  for (auto& input : inputs) input = to_device(input, device);
  c10::IValue reference;
  if (!inputs.empty()) {
    try {
      c10::InferenceMode guard;
      reference = backend->run(deep_copy(inputs));
    } catch (const std::exception&) {
      inputs.clear();  // shapes the model does not take after all: wait for real ones
    }
  }
  if (inputs.empty()) {
    optimize_on_first_forward = true;
    return;
  }
  optimize([&] { return reference_miss(*backend, manifest(), inputs, reference); }, inputs,
           "the stored module's outputs on inputs synthesized from the manifest");
}

c10::IValue Model::Impl::run_and_optimize(std::vector<c10::IValue> inputs) {
  std::lock_guard<std::mutex> lock(optimizing);
  if (!optimize_on_first_forward || without_values(inputs)) return backend->run(std::move(inputs));
  std::vector<c10::IValue> copies = deep_copy(inputs);
  c10::IValue output = backend->run(std::move(inputs));  // a failure leaves it pending
  optimize([&] { return reference_miss(*backend, manifest(), copies, output); }, copies,
           "the stored module's outputs on the first inputs");
  optimize_on_first_forward = false;
  return output;
}

namespace {

// The backend of the archive's format; a load-time precision only where the engine takes one.
std::unique_ptr<backends::Backend> open_backend(const Archive& archive, const c10::Device& device,
                                                const LoadOptions& options) {
  if (options.precision == "bf16" && archive.format() != ModelFormat::OpenVINO) {
    throw bad_input("precision " + options.precision +
                    " is chosen at load for OpenVINO archives "
                    "only; " +
                    archive.path().string() + " is " + format_name(archive.format()) +
                    " (export it with torchship.export(..., precision=\"bf16\") instead)");
  }
  switch (archive.format()) {
    case ModelFormat::AOTInductor:
      return backends::open_aoti(archive, device, options.concurrent_forwards);
    case ModelFormat::OpenVINO:
      return backends::open_openvino(
          archive, device,
          {options.precision, options.threads > 0 ? options.threads : intra_op_threads(),
           options.concurrent_forwards});
    default:
      return backends::open_torchscript(archive, device);
  }
}

}  // namespace

Model Model::load(const std::filesystem::path& path, const LoadOptions& options) {
  return load(Archive::open(path), options);
}

Model Model::load(const Archive& archive, const LoadOptions& options) {
  const std::filesystem::path& path = archive.path();
  apply_runtime_defaults();
  c10::Device device = parse_device(options.device);
  check_options(options);
  check_engine(options.engine, archive);
  for (const auto& library : options.extensions) load_extension(library);
  LoadOptions resolved = options;
  resolved.precision = load_precision(options.precision, archive);
  if (archive.format() == ModelFormat::Auto || resolved.precision == "auto") {
    EngineChoice choice = choose_engine(archive, resolved);
    auto& notes = choice.model.impl_->notes;
    notes.insert(notes.begin(), choice.notes.begin(), choice.notes.end());
    release_free_memory();  // the forms not chosen
    return choice.model;
  }

  auto impl = std::make_shared<Impl>();
  impl->wanted_optimization = options.optimization;
  impl->load_precision = resolved.precision;
  impl->archive = archive;
  impl->base_form = archive;
  impl->options = options;
  impl->device = device;
  impl->max_image_pixels = options.max_image_pixels;
  impl->backend = open_backend(impl->archive, device, resolved);
  Model model;
  model.impl_ = std::move(impl);
  Impl& state = *model.impl_;
  if (options.optimize && options.optimization != "stored") state.prepare_optimization(model);
  if (options.warmup_runs > 0) {
    auto inputs = golden_inputs(model);
    if (inputs.empty())
      state.notes.push_back("no warm-up: the archive has no golden inputs to run");
    for (int run = 0; run < options.warmup_runs && !inputs.empty(); ++run) {
      forward_golden(model, inputs);
    }
  }
  // An optimized model was already verified against the golden vectors by optimize().
  GoldenReport report;
  if (options.check_golden && state.archive.has_golden() && !state.optimized) {
    report = check_golden(model);
  }
  for (size_t number = 0; number < report.cases.size(); ++number) {
    for (const auto& leaf : report.cases[number].leaves) {
      if (leaf.ok) continue;
      throw bad_model("golden check failed for " + path.string() + ": case " +
                      std::to_string(number) + ", " + leaf.path + ": " + leaf.problem +
                      " (max abs error " + c10::str(leaf.max_abs) + ")");
    }
  }
  // What loading freed (optimization candidates, the warm-up's activations, a package's
  // unpacked weights) goes back to the system rather than staying with the process
  // (tune_memory_for_inference keeps freed memory for the forwards to come).
  release_free_memory();
  return model;
}

Model Model::with_weights(const WeightsUpdate& update) const {
  const Impl& state = *impl_;
  LoadOptions options = state.options;
  options.engine = "auto";  // the base is one form's archive
  options.precision = state.load_precision;
  std::string chosen = optimization().chosen;  // (a copy, taken under its lock)
  options.optimization = chosen.empty() ? state.wanted_optimization : chosen;
  options.check_golden = true;  // before it takes any traffic
  Model model = load(update.over(state.base_form), options);
  // What it keeps: the update's golden vectors, not a second copy of its weights.
  model.impl_->archive = update.over(state.base_form, /*with_weights=*/false);
  model.impl_->base_form = state.base_form;
  model.impl_->weights_update = update;
  model.impl_->notes.push_back("weights from " + update.path().string());
  return model;
}

const WeightsUpdate* Model::weights_update() const {
  return impl_->weights_update ? &*impl_->weights_update : nullptr;
}

ModelFormat Model::format() const {
  return impl_->archive.format();
}
std::string Model::precision() const {
  if (impl_->load_precision != "fp32") return impl_->load_precision;
  const Manifest* manifest = impl_->manifest();
  return manifest && !manifest->precision.empty() ? manifest->precision : "fp32";
}
const Archive& Model::archive() const {
  return impl_->archive;
}
const std::optional<Manifest>& Model::manifest() const {
  return impl_->archive.manifest();
}
c10::Device Model::device() const {
  return impl_->device;
}
const std::vector<Argument>& Model::inputs() const {
  return impl_->backend->signature().inputs;
}
const c10::TypePtr& Model::output_type() const {
  return impl_->backend->signature().output_type;
}
std::string Model::signature() const {
  const auto& signature = impl_->backend->signature();
  return "forward(" + argument_list(signature) + ") -> " + signature.output_type->annotation_str();
}
ModelSummary Model::summary() const {
  return impl_->backend->summary();
}
bool Model::optimized() const {
  return impl_->optimized;
}
OptimizationReport Model::optimization() const {
  std::lock_guard<std::mutex> lock(impl_->optimizing);  // the first forward may be filling it
  return impl_->optimization;
}
std::optional<int64_t> Model::max_batch_size() const {
  const Manifest* manifest = impl_->manifest();
  if (!manifest || !manifest->batch_dim) return std::nullopt;
  std::optional<int64_t> largest;
  for (const auto& spec : manifest->inputs) {
    auto range = spec.size_ranges.find(0);
    if (range == spec.size_ranges.end()) continue;
    largest = std::min(largest.value_or(range->second.second), range->second.second);
  }
  return largest;
}

std::vector<std::string> Model::notes() const {
  std::lock_guard<std::mutex> lock(impl_->optimizing);  // the first forward may be adding one
  return impl_->notes;
}

void Model::check_input_count(size_t count) const {
  torchship::check_input_count(impl_->backend->signature(), count);
}

void Model::check_inputs(const std::vector<c10::IValue>& inputs) const {
  torchship::check_inputs(impl_->backend->signature(), impl_->manifest(), inputs);
}

c10::IValue Model::forward(std::vector<c10::IValue> inputs) const {
  check_inputs(inputs);
  for (auto& input : inputs) input = to_device(input, impl_->device);
  c10::InferenceMode guard;
  try {
    if (impl_->optimize_on_first_forward) return impl_->run_and_optimize(std::move(inputs));
    return impl_->backend->run(std::move(inputs));
  } catch (const Error&) {
    throw;  // the backend's own checks (a list of another length than compiled for)
  } catch (const std::bad_alloc&) {
    throw internal_error("forward ran out of memory");
  } catch (const std::exception& e) {  // c10::Error, torch::jit::JITException, runtime_error
    backends::RunFailure failure = impl_->backend->explain(e);
    if (failure.out_of_memory) throw internal_error("forward ran out of memory: " + failure.why);
    // Inputs the manifest pins down (dtype and every size but a batch dimension) were checked
    // above: the model failing on one is the model's failure, not the caller's, unless the
    // failure says the values were wrong. Where sizes are free, the model may refuse sizes it
    // cannot take (a kernel larger than the image): the caller's to fix.
    if (inputs_pinned_by_manifest(impl_->backend->signature(), impl_->manifest()) &&
        !failure.blames_the_values) {
      throw internal_error("the model failed on an input that matches its manifest: " +
                           failure.why);
    }
    throw bad_input("the model rejected the input: " + failure.why);
  }
}

}  // namespace torchship
