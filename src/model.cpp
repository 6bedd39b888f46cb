#include "torchship/model.h"

#include <cstdio>
#include <tuple>

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/csrc/jit/runtime/operator.h>
#include <torch/cuda.h>

#include "torch_compat.h"
#include "torchship/error.h"
#include "torchship/golden.h"
#include "torchship/image.h"
#include "torchship/tensor_io.h"

namespace torchship {
namespace {

c10::Device parse_device(const std::string& text) {
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(text);
  } catch (const c10::Error&) {
    throw bad_input("invalid device '" + text + "': expected cpu, cuda or cuda:N");
  }
  if (device.is_cpu()) return device;
  if (!device.is_cuda()) {
    throw unsupported("device '" + text + "' is not supported: expected cpu, cuda or cuda:N");
  }
  if (!torch::cuda::is_available()) {
    throw unsupported("device '" + text + "' requested, but " +
                      (at::hasCUDA() ? std::string("no CUDA device is visible")
                                     : std::string("this libtorch was built without CUDA")) +
                      "; use --device cpu");
  }
  auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (device.has_index() && device.index() >= count) {
    throw unsupported("device '" + text + "' requested, but only " + std::to_string(count) +
                      " CUDA device(s) are visible");
  }
  return device;
}

// The operator a failed load names ("torchvision::nms"), or "" when the failure is another.
std::string missing_operator(const std::string& message) {
  static const std::string kMarker = "Unknown builtin op: ";
  auto at = message.find(kMarker);
  if (at == std::string::npos) return "";
  auto begin = at + kMarker.size();
  auto end = message.find_first_of(".\n ", begin);
  return message.substr(begin, end - begin);
}

std::string first_line(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

// TorchScript errors carry the script traceback; the last line says what happened.
std::string script_error_summary(const std::exception& error) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  std::string text = c10_error ? c10_error->what_without_backtrace() : error.what();
  if (text.find("Traceback of TorchScript") == std::string::npos) return first_line(text);
  auto end = text.find_last_not_of("\n ");
  auto begin = text.rfind('\n', end);
  std::string last = text.substr(begin == std::string::npos ? 0 : begin + 1, end - begin);
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
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  std::string text = c10_error ? c10_error->what_without_backtrace() : error.what();
  auto end = text.find_last_not_of("\n ");
  if (end == std::string::npos) return false;
  auto begin = text.rfind('\n', end);
  std::string last = text.substr(begin == std::string::npos ? 0 : begin + 1, end - begin);
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
      return torch::jit::load(path, device);
    } catch (const std::exception& e) {  // c10::Error, or torch::jit::ErrorReport
      const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
      std::string message = c10_error ? c10_error->what_without_backtrace() : e.what();
      std::string op = missing_operator(message);
      if (op.empty()) {
        auto start = message.find_first_not_of("\n ");
        std::string why = first_line(message.substr(start == std::string::npos ? 0 : start));
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

c10::IValue to_device(const c10::IValue& value, const c10::Device& device) {
  if (value.isTensor()) return value.toTensor().to(device);
  if (device.is_cpu()) {
    // Inputs built on the CPU need no walk; only tensors elsewhere would have to move.
    return value;
  }
  if (value.isList()) {
    auto list = value.toList();
    c10::impl::GenericList moved(list.elementType());
    for (const c10::IValue& item : list) moved.push_back(to_device(item, device));
    return moved;
  }
  if (value.isTuple()) {
    std::vector<c10::IValue> items;
    for (const auto& item : value.toTupleRef().elements()) items.push_back(to_device(item, device));
    return c10::ivalue::Tuple::create(std::move(items));
  }
  if (value.isGenericDict()) {
    auto dict = value.toGenericDict();
    c10::impl::GenericDict moved(dict.keyType(), dict.valueType());
    for (const auto& entry : dict) moved.insert(entry.key(), to_device(entry.value(), device));
    return moved;
  }
  return value;
}

// Checks a tensor against the manifest's spec for it (dtype, rank, fixed dimensions).
void check_tensor(const at::Tensor& tensor, const TensorSpec& spec, const std::string& where) {
  bool dtype_ok =
      spec.datatype.empty() || tensor.scalar_type() == scalar_type_from_datatype(spec.datatype);
  bool shape_ok = spec.shape.empty() || tensor.dim() == static_cast<int64_t>(spec.shape.size());
  bool empty_free = false;  // a free size (-1) is any size but 0: no model takes nothing there
  for (size_t i = 0; shape_ok && i < spec.shape.size(); ++i) {
    int64_t size = tensor.size(static_cast<int64_t>(i));
    empty_free = spec.shape[i] == -1 && size == 0;
    shape_ok = (spec.shape[i] == -1 && size > 0) || spec.shape[i] == size;
  }
  if (dtype_ok && shape_ok) return;
  std::string expected = spec.datatype.empty() ? "a tensor" : spec.datatype + " tensor";
  if (!spec.shape.empty()) expected += " of shape " + shape_text(spec.shape);
  if (!spec.layout.empty()) expected += " (" + spec.layout + ")";
  if (empty_free) expected += ", -1 being any size from 1";
  throw bad_input(where + ": expected " + expected + ", got " + describe(tensor));
}

std::string plural(size_t count, const char* word) {
  return std::to_string(count) + " " + word + (count == 1 ? "" : "s");
}

// The tensor of a classification output: the output itself, or the tuple element the manifest
// names as logits/probabilities (the first tensor otherwise).
at::Tensor scores_tensor(const c10::IValue& output, const Manifest* manifest, bool* is_logits) {
  *is_logits = true;
  auto kind_of = [&](size_t index) -> std::string {
    if (!manifest || index >= manifest->outputs.size()) return "";
    return manifest->outputs[index].kind;
  };
  if (output.isTensor()) {
    *is_logits = kind_of(0) != "probabilities";
    return output.toTensor();
  }
  if (output.isTuple()) {
    const auto& elements = output.toTupleRef().elements();
    for (size_t i = 0; i < elements.size(); ++i) {
      std::string kind = kind_of(i);
      if (elements[i].isTensor() && (kind == "logits" || kind == "probabilities")) {
        *is_logits = kind == "logits";
        return elements[i].toTensor();
      }
    }
    for (const auto& element : elements) {
      if (element.isTensor()) return element.toTensor();
    }
  }
  throw bad_model("classify needs a model that returns a tensor of scores, this one returns " +
                  describe(output));
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

ImageSpec image_spec_of(const TensorSpec* spec) {
  return spec && spec->image ? *spec->image : ImageSpec{};
}

// A prepared H x W x C uint8 image in the layout and dtype the manifest asks for.
at::Tensor lay_out(at::Tensor image, const TensorSpec* spec) {
  std::string layout = spec ? spec->layout : "";
  if (layout == "CHW" || layout == "BCHW") image = image.permute({2, 0, 1});
  if (layout == "BHWC" || layout == "BCHW") image = image.unsqueeze(0);
  if (spec && !spec->datatype.empty() && spec->datatype != "UINT8") {
    // Float image inputs follow torchvision's ToTensor convention: values in [0, 1].
    image = image.to(scalar_type_from_datatype(spec->datatype)).div_(255);
  }
  return image.contiguous();
}

}  // namespace

struct Model::Impl {
  Archive archive;
  c10::Device device{c10::kCPU};
  mutable torch::jit::Module module;
  std::vector<Argument> inputs;
  c10::TypePtr output_type;
  size_t required_inputs = 0;
  ModelSummary summary;
  bool optimized = false;
  std::vector<std::string> notes;
  int64_t max_image_pixels = kDefaultMaxImagePixels;

  // Whether every forward argument is a tensor the manifest describes with a datatype and fixed
  // sizes (the first, batch, dimension may be free).
  bool inputs_pinned_by_manifest() const {
    for (size_t i = 0; i < inputs.size(); ++i) {
      const TensorSpec* spec = input_spec(i);
      if (inputs[i].type->kind() != c10::TypeKind::TensorType || !spec || spec->datatype.empty() ||
          spec->shape.empty()) {
        return false;
      }
      for (size_t d = 1; d < spec->shape.size(); ++d) {
        if (spec->shape[d] < 0) return false;
      }
    }
    return true;
  }

  const TensorSpec* input_spec(size_t index) const {
    const auto& manifest = archive.manifest();
    if (!manifest || index >= manifest->inputs.size()) return nullptr;
    return &manifest->inputs[index];
  }

  std::string argument_list() const {
    std::string text;
    for (size_t i = 0; i < inputs.size(); ++i) {
      text += (i ? ", " : "") + inputs[i].name + ": " + inputs[i].type_name();
    }
    return text;
  }

  // Freezes and optimizes the module, and keeps the result only when it still reproduces the
  // archive's golden vectors: conv-bn folding and oneDNN kernels change float results, by
  // rounding on most models and by far more on some.
  void try_optimize(const Model& model) {
    if (!archive.has_golden()) {
      notes.push_back(
          "not optimized: the archive has no golden vectors to verify an optimized "
          "module against");
      return;
    }
    torch::jit::Module stored = module;
    // A rejected candidate must leave no trace (libtorch's warnings) on the user's stderr.
    compat::DiscardWarnings discard;
    compat::WarningHandlerGuard quiet(&discard);
    try {
      torch::jit::Module frozen = torch::jit::freeze(stored);
      module = torch::jit::optimize_for_inference(frozen);  // rewrites frozen's graph in place
    } catch (const std::exception& e) {
      module = stored;
      notes.push_back("not optimized: the model does not freeze (" + first_line(e.what()) + ")");
      return;
    }
    std::string miss = golden_miss(model);
    if (miss.empty()) {
      optimized = true;
      return;
    }
    // optimize_for_inference swaps in other kernels (oneDNN layouts, folded batch norms) whose
    // rounding may leave the tolerance; freezing alone inlines the weights and folds constants,
    // which usually computes the same numbers, and still saves the attribute lookups.
    module = torch::jit::freeze(stored);
    if (golden_miss(model).empty()) {
      optimized = true;
      notes.push_back(
          "optimized by freezing only: optimize_for_inference misses the golden "
          "vectors (" +
          miss + ")");
      return;
    }
    module = stored;
    notes.push_back("not optimized: the optimized module misses the golden vectors (" + miss +
                    "), so the model runs as stored");
  }

  // "" when the module as it is now reproduces the golden vectors, else the first miss; a
  // candidate that fails to run misses too (the stored module is tried, or says why, after it).
  static std::string golden_miss(const Model& model) {
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

  void check_input_count(size_t count) const {
    if (count < required_inputs || count > inputs.size()) {
      std::string expected =
          required_inputs == inputs.size()
              ? plural(inputs.size(), "input")
              : std::to_string(required_inputs) + " to " + plural(inputs.size(), "input");
      throw bad_input("expected " + expected + " (" + argument_list() + "), got " +
                      std::to_string(count));
    }
  }

  void check_inputs(const std::vector<c10::IValue>& values) const {
    check_input_count(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      const Argument& argument = inputs[i];
      std::string where = "input '" + argument.name + "'";
      if (!values[i].type()->isSubtypeOf(*argument.type)) {
        throw bad_input(where + ": expected " + argument.type_name() + ", got " +
                        describe(values[i]));
      }
      const TensorSpec* spec = input_spec(i);
      if (!spec) continue;
      if (argument.type->kind() == c10::TypeKind::TensorType) {
        check_tensor(values[i].toTensor(), *spec, where);
      } else if (argument.type->kind() == c10::TypeKind::ListType && values[i].isList()) {
        auto list = values[i].toList();
        for (size_t k = 0; k < list.size(); ++k) {
          c10::IValue item = list.get(k);
          if (item.isTensor())
            check_tensor(item.toTensor(), *spec, where + "[" + std::to_string(k) + "]");
        }
      }
    }
  }
};

namespace {

// int8 archives run on the kernel library they were quantized for (fbgemm, oneDNN, qnnpack):
// packed weights of one cannot run on another.
void select_quantized_engine(const Manifest& manifest) {
  const std::string& wanted = manifest.exported.quantized_engine;
  if (manifest.precision != "int8" || wanted.empty()) return;
  std::string available;
  for (at::QEngine engine : at::globalContext().supportedQEngines()) {
    std::string name = c10::toString(engine);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
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

}  // namespace

Model Model::load(const std::filesystem::path& path, const LoadOptions& options) {
  c10::Device device = parse_device(options.device);
  if (options.threads < 0) {
    throw bad_input("threads must be 0 (default) or positive, got " +
                    std::to_string(options.threads));
  }
  if (options.threads > 0) at::set_num_threads(options.threads);
  if (options.interop_threads > 0 &&
      static_cast<int64_t>(at::get_num_interop_threads()) != options.interop_threads) {
    try {
      at::set_num_interop_threads(options.interop_threads);
    } catch (const c10::Error&) {
      throw unsupported(
          "inter-op threads can be set once per process, before any model runs; "
          "it is already " +
          std::to_string(at::get_num_interop_threads()));
    }
  }
  for (const auto& library : options.extensions) load_extension(library);
  if (!options.profiling_executor) torch::jit::getProfilingMode() = false;
  if (!options.graph_optimizations) torch::jit::setGraphExecutorOptimize(false);

  auto impl = std::make_shared<Impl>();
  impl->archive = Archive::open(path);
  if (impl->archive.manifest()) select_quantized_engine(*impl->archive.manifest());
  impl->device = device;
  if (options.max_image_pixels <= 0) {
    throw bad_input("max_image_pixels must be positive, got " +
                    std::to_string(options.max_image_pixels));
  }
  impl->max_image_pixels = options.max_image_pixels;
  impl->module = load_module(impl->archive, device);
  impl->module.eval();
  impl->summary = summarize(impl->module);
  auto method = impl->module.find_method("forward");
  if (!method)
    throw bad_model("cannot load " + path.string() + ": the module has no forward method");
  const c10::FunctionSchema& schema = method->function().getSchema();
  for (size_t i = 1; i < schema.arguments().size(); ++i) {  // 0 is self
    const auto& argument = schema.arguments()[i];
    impl->inputs.push_back(
        {argument.name(), argument.type(), argument.default_value().has_value()});
    if (!argument.default_value()) impl->required_inputs = impl->inputs.size();
  }
  impl->output_type = schema.returns().size() == 1
                          ? schema.returns()[0].type()
                          : c10::TupleType::create(c10::fmap(
                                schema.returns(), [](const auto& r) { return r.type(); }));
  Model model;
  model.impl_ = std::move(impl);
  if (options.optimize) model.impl_->try_optimize(model);
  if (options.warmup_runs > 0) {
    auto inputs = golden_inputs(model);
    if (inputs.empty()) {
      model.impl_->notes.push_back("no warm-up: the archive has no golden inputs to run");
    }
    for (int run = 0; run < options.warmup_runs && !inputs.empty(); ++run) {
      forward_golden(model, inputs);
    }
  }
  // An optimized module was already verified against the golden vectors by try_optimize.
  GoldenReport report;
  if (options.check_golden && model.archive().has_golden() && !model.optimized()) {
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
  return model;
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
  return impl_->inputs;
}
const c10::TypePtr& Model::output_type() const {
  return impl_->output_type;
}
torch::jit::Module& Model::module() const {
  return impl_->module;
}

std::string Model::signature() const {
  return "forward(" + impl_->argument_list() + ") -> " + impl_->output_type->annotation_str();
}

void Model::check_input_count(size_t count) const {
  impl_->check_input_count(count);
}

ModelSummary Model::summary() const {
  return impl_->summary;
}
bool Model::optimized() const {
  return impl_->optimized;
}
const std::vector<std::string>& Model::notes() const {
  return impl_->notes;
}

void Model::check_inputs(const std::vector<c10::IValue>& inputs) const {
  impl_->check_inputs(inputs);
}

c10::IValue Model::forward(std::vector<c10::IValue> inputs) const {
  impl_->check_inputs(inputs);
  for (auto& input : inputs) input = to_device(input, impl_->device);
  c10::InferenceMode guard;
  try {
    return impl_->module.forward(std::move(inputs));
  } catch (const std::bad_alloc&) {
    throw internal_error("forward ran out of memory");
  } catch (const std::exception& e) {  // c10::Error, or torch::jit::JITException from `raise`
    std::string why = script_error_summary(e);
    if (why.find("can't allocate memory") != std::string::npos ||
        why.find("out of memory") != std::string::npos) {
      throw internal_error("forward ran out of memory: " + why);
    }
    // Inputs the manifest pins down (dtype and every size but a batch dimension) were checked
    // above: the model failing on one is the model's failure, not the caller's, unless the
    // failure says the values were wrong. Where sizes are free, the model may refuse sizes it
    // cannot take (a kernel larger than the image): the caller's to fix.
    if (impl_->inputs_pinned_by_manifest() && !blames_the_values(e)) {
      throw internal_error("the model failed on an input that matches its manifest: " + why);
    }
    throw bad_input("the model rejected the input: " + why);
  }
}

c10::IValue Model::image_input(const at::Tensor& hwc_rgb, size_t index) const {
  const TensorSpec* spec = impl_->input_spec(index);
  return lay_out(prepare_image(hwc_rgb, image_spec_of(spec)), spec);
}

c10::IValue Model::image_input_from_bytes(std::string_view bytes, size_t index,
                                          std::string_view origin) const {
  const TensorSpec* spec = impl_->input_spec(index);
  return lay_out(decode_image_bytes(bytes, image_spec_of(spec), origin, Decode::Exact,
                                    impl_->max_image_pixels),
                 spec);
}

c10::IValue Model::image_input(const std::filesystem::path& image, size_t index,
                               Decode decode) const {
  // Decodes straight into the manifest's colour order and size.
  const TensorSpec* spec = impl_->input_spec(index);
  return lay_out(decode_image(image, image_spec_of(spec), decode, impl_->max_image_pixels), spec);
}

std::vector<std::vector<Prediction>> Model::top_k_rows(const c10::IValue& output, int k) const {
  const Manifest* manifest = impl_->archive.manifest() ? &*impl_->archive.manifest() : nullptr;
  bool is_logits = true;
  at::Tensor scores = scores_tensor(output, manifest, &is_logits).to(at::kCPU).to(at::kFloat);
  if (scores.dim() == 1) scores = scores.unsqueeze(0);
  if (scores.dim() != 2) {
    throw bad_model("classify needs scores of shape [C] or [B, C], the model returned " +
                    describe(scores));
  }
  k = std::max(1, std::min<int>(k, static_cast<int>(scores.size(1))));
  // Ranked on the raw scores with ties to the lower index, as torch.argmax does: int8 models
  // produce exact ties, and softmax can merge scores that differ in the last bit.
  at::Tensor indices = std::get<1>(at::sort(scores, /*stable=*/true, /*dim=*/1,
                                            /*descending=*/true))
                           .narrow(1, 0, k)
                           .contiguous();
  at::Tensor values = (is_logits ? scores.softmax(1) : scores).gather(1, indices);
  auto value = values.accessor<float, 2>();
  auto index = indices.accessor<int64_t, 2>();
  std::vector<std::vector<Prediction>> rows(static_cast<size_t>(scores.size(0)));
  for (int64_t row = 0; row < scores.size(0); ++row) {
    for (int i = 0; i < k; ++i) {
      int64_t label = index[row][i];
      rows[row].push_back({label, manifest ? manifest->label(label) : "", value[row][i]});
    }
  }
  return rows;
}

std::vector<Prediction> Model::top_k(const c10::IValue& output, int k) const {
  auto rows = top_k_rows(output, k);
  if (rows.size() != 1) {
    throw bad_model("classify expected the scores of one image, the model returned " +
                    std::to_string(rows.size()) + " rows");
  }
  return rows[0];
}

std::vector<std::vector<Prediction>> Model::classify_batch(const std::vector<c10::IValue>& images,
                                                           int k, size_t batch_size) const {
  std::vector<std::vector<Prediction>> results;
  results.reserve(images.size());
  const auto& manifest = impl_->archive.manifest();
  bool batched = manifest && manifest->batch_dim && batch_size > 1;
  size_t start = 0;
  while (start < images.size()) {
    // The longest run of same-sized images from `start`, up to batch_size.
    size_t end = start + 1;
    if (batched && images[start].isTensor()) {
      auto sizes = images[start].toTensor().sizes();
      while (end < images.size() && end - start < batch_size && images[end].isTensor() &&
             images[end].toTensor().sizes() == sizes) {
        ++end;
      }
    }
    if (end - start == 1) {
      results.push_back(top_k(forward({images[start]}), k));
    } else {
      std::vector<at::Tensor> tensors;
      for (size_t i = start; i < end; ++i) tensors.push_back(images[i].toTensor());
      // Images laid out with their own batch dimension of 1 (BHWC, BCHW) concatenate.
      bool has_batch_dim = !manifest->inputs.empty() && !manifest->inputs[0].layout.empty() &&
                           manifest->inputs[0].layout[0] == 'B';
      at::Tensor batch = has_batch_dim ? at::cat(tensors, 0) : at::stack(tensors, 0);
      auto rows = top_k_rows(forward({batch}), k);
      if (rows.size() != end - start) {
        throw bad_model("a batch of " + std::to_string(end - start) + " images returned " +
                        std::to_string(rows.size()) + " rows of scores");
      }
      for (auto& row : rows) results.push_back(std::move(row));
    }
    start = end;
  }
  return results;
}

std::vector<Prediction> Model::classify(const std::filesystem::path& image, int k) const {
  return top_k(forward({image_input(image)}), k);
}

std::vector<Prediction> Model::classify(const at::Tensor& hwc_rgb, int k) const {
  return top_k(forward({image_input(hwc_rgb)}), k);
}

namespace {

Segmentation segmentation_from(const c10::IValue& output, const Manifest* manifest) {
  Segmentation result;
  auto squeeze_batch = [](at::Tensor t, int64_t rank) {
    return t.dim() == rank + 1 && t.size(0) == 1 ? t.squeeze(0).to(at::kCPU) : t.to(at::kCPU);
  };
  if (output.isTensor()) {
    result.logits = squeeze_batch(output.toTensor(), 3);
    result.labels = result.logits.argmax(0);
    return result;
  }
  if (!output.isTuple()) {
    throw bad_model(
        "segment needs a model that returns logits or a tuple (logits, labels, "
        "overlay), this one returns " +
        describe(output));
  }
  const auto& elements = output.toTupleRef().elements();
  static const char* kDefaultNames[] = {"logits", "labels", "overlay"};
  for (size_t i = 0; i < elements.size(); ++i) {
    if (!elements[i].isTensor()) continue;
    std::string name = manifest && i < manifest->outputs.size() ? manifest->outputs[i].name
                       : i < 3                                  ? kDefaultNames[i]
                                                                : "";
    if (name == "logits") result.logits = squeeze_batch(elements[i].toTensor(), 3);
    if (name == "labels") result.labels = squeeze_batch(elements[i].toTensor(), 2);
    if (name == "overlay") result.overlay = squeeze_batch(elements[i].toTensor(), 3);
  }
  if (!result.labels.defined() && result.logits.defined()) result.labels = result.logits.argmax(0);
  if (!result.labels.defined()) {
    throw bad_model("segment found no 'labels' or 'logits' output in " + describe(output));
  }
  return result;
}

}  // namespace

Segmentation Model::segment(const std::filesystem::path& image) const {
  const auto& manifest = impl_->archive.manifest();
  return segmentation_from(forward({image_input(image)}), manifest ? &*manifest : nullptr);
}

Segmentation Model::segment(const at::Tensor& hwc_rgb) const {
  const auto& manifest = impl_->archive.manifest();
  return segmentation_from(forward({image_input(hwc_rgb)}), manifest ? &*manifest : nullptr);
}

}  // namespace torchship
