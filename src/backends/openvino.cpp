// The OpenVINO backend: archives written by torchship.export(format="openvino"), whose IR is read
// from the archive's bytes in memory (no temporary file) and compiled by OpenVINO's CPU plugin,
// in the precision asked for (OpenVINO would pick bf16 by itself on CPUs that compute it).
#include "backends/backend.h"
#include "torchship/error.h"

#ifdef TORCHSHIP_HAVE_OPENVINO
#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>

#include <openvino/op/constant.hpp>
#include <openvino/openvino.hpp>

#include "backends/exported_call.h"
#include "core/text.h"
#include "platform/tbb_binding.h"
#include "torchship/datatype.h"
#include "torchship/json_input.h"
#include "torchship/limits.h"
#endif

namespace torchship::backends {

#ifndef TORCHSHIP_HAVE_OPENVINO

std::unique_ptr<Backend> open_openvino(const Archive& archive, const c10::Device&,
                                       const EngineSettings&) {
  throw unsupported(
      "cannot load " + archive.path().string() +
      ": it is an OpenVINO archive, and this torchship was built without OpenVINO (configure it "
      "with OpenVINO's CMake package on CMAKE_PREFIX_PATH: pip install openvino, then python -c "
      "'import openvino.utils as u; print(u.get_cmake_path())'), or export the model with "
      "format='torchscript' or 'aoti'");
}

#else

namespace {

constexpr const char* kWeights = "openvino/model.bin";
constexpr const char* kCallSpec = "openvino/call_spec.json";

// One Core per process: it loads the CPU plugin once and shares it between models.
ov::Core& core() {
  static ov::Core instance = [] {
    platform::keep_tbb_from_deep_binding();
    return ov::Core();
  }();
  return instance;
}

ov::element::Type element_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return ov::element::f32;
    case at::kDouble:
      return ov::element::f64;
    case at::kHalf:
      return ov::element::f16;
    case at::kBFloat16:
      return ov::element::bf16;
    case at::kByte:
      return ov::element::u8;
    case at::kChar:
      return ov::element::i8;
    case at::kShort:
      return ov::element::i16;
    case at::kInt:
      return ov::element::i32;
    case at::kLong:
      return ov::element::i64;
    case at::kBool:
      return ov::element::boolean;
    default:
      return ov::element::dynamic;
  }
}

at::ScalarType scalar_type(const ov::element::Type& type, const std::string& what) {
  for (auto candidate : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16, at::kByte, at::kChar,
                         at::kShort, at::kInt, at::kLong, at::kBool}) {
    if (element_type(candidate) == type) return candidate;
  }
  throw bad_model(what + " is of OpenVINO type " + type.get_type_name() +
                  ", which torchship has no tensor type for");
}

// What an OpenVINO exception says, in one line: its messages stack the C++ source location of
// each check that failed ("Exception from src/...:123:", "Check '...' failed at src/...:") above
// the reason, which comes last.
std::string openvino_reason(const std::exception& error) {
  std::string reason;
  std::istringstream lines(error.what());
  for (std::string line; std::getline(lines, line);) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (line.rfind("Exception from ", 0) == 0 || line.rfind("Check '", 0) == 0) continue;
    reason = line;
  }
  return reason.empty() ? first_line(error) : first_line_of(reason);
}

std::string record(const Archive& archive, const char* name) {
  auto bytes = archive.read_record(name);
  if (!bytes) {
    throw bad_model("cannot load " + archive.path().string() + ": the OpenVINO archive has no " +
                    name);
  }
  return std::move(*bytes);
}

// fp32 unless bf16 is asked for: OpenVINO's CPU plugin otherwise runs bf16 on CPUs with
// AVX512-BF16 or AMX, outside the archive's fp32 tolerance. One stream per concurrent forward,
// each with the threads a libtorch forward would have, so that models of both engines in one
// process share the CPUs; unpinned, so that TBB's workers do not hold cores that OpenMP's
// threads need.
ov::AnyMap compile_properties(const EngineSettings& settings) {
  int streams = std::max(1, settings.concurrent_forwards);
  return {ov::hint::inference_precision(settings.precision == "bf16" ? ov::element::bf16
                                                                     : ov::element::f32),
          ov::num_streams(streams),
          ov::inference_num_threads(std::max(1, settings.threads) * streams),
          ov::hint::enable_cpu_pinning(false)};
}

class OpenVinoBackend final : public Backend {
 public:
  OpenVinoBackend(const Archive& archive, const EngineSettings& settings)
      : path_(archive.path().string()), settings_(settings) {
    auto spec = parse_json(record(archive, kCallSpec), kCallSpec);
    if (!spec.is_array() || spec.size() != 2 || !spec[0].is_string() || !spec[1].is_string()) {
      throw bad_model("cannot load " + path_ + ": " + kCallSpec +
                      " is not [input spec, output spec]");
    }
    call_.emplace(spec[0].get<std::string>(), spec[1].get<std::string>(), archive.manifest(),
                  path_);
    std::string graph = record(archive, kOpenVinoGraphRecord);
    weights_ = record(archive, kWeights);
    std::shared_ptr<ov::Model> model;
    try {
      ov::Tensor weights(ov::element::u8, {weights_.size()}, weights_.data());
      model = core().read_model(graph, weights);
    } catch (const std::exception& e) {
      throw bad_model("cannot load " + path_ +
                      ": OpenVINO cannot read its IR: " + openvino_reason(e));
    }
    count_parameters(*model);
    dynamic_ = compile(model, "");
    if (dynamic_->model.outputs().size() != call_->output_count()) {
      throw bad_model("cannot load " + path_ + ": its IR has " +
                      std::to_string(dynamic_->model.outputs().size()) +
                      " outputs, its output structure holds " +
                      std::to_string(call_->output_count()));
    }
    for (const auto& output : dynamic_->model.outputs()) {
      output_types_.push_back(scalar_type(output.get_element_type(), "an output of " + path_));
    }
    if (archive.manifest()) {
      for (const auto& fixed : archive.manifest()->exported.static_batches) {
        statics_.push_back({fixed, compile(with_batch(*model, fixed), fixed.model)});
      }
    }
    summary_.methods = {"forward"};
  }

  ModelFormat format() const override { return ModelFormat::OpenVINO; }
  const Signature& signature() const override { return call_->signature(); }
  ModelSummary summary() const override { return summary_; }

  c10::IValue run(std::vector<c10::IValue> inputs) const override {
    std::vector<at::Tensor> flat = call_->flatten(inputs);
    Compiled& compiled = compiled_for(inputs);
    const auto& parameters = compiled.parameters;
    if (flat.size() != parameters.size()) {
      throw bad_input("the OpenVINO model takes " + std::to_string(parameters.size()) +
                      " tensors, got " + std::to_string(flat.size()));
    }
    Request request(compiled);
    for (size_t i = 0; i < flat.size(); ++i) {
      request->set_input_tensor(i, as_ov_tensor(flat[i], parameters[i], i));
    }
    request->infer();
    std::vector<at::Tensor> outputs;
    for (size_t i = 0; i < output_types_.size(); ++i) {
      outputs.push_back(to_torch(request->get_output_tensor(i), output_types_[i]));
    }
    return call_->unflatten(outputs);
  }

  RunFailure explain(const std::exception& error) const override {
    return failure_because(openvino_reason(error));
  }

  bool optimizes() const override { return false; }
  bool optimize(const CandidateProbe&, OptimizationReport& report,
                std::vector<std::string>& notes) override {
    std::vector<int64_t> static_batches;
    for (const auto& fixed : statics_) static_batches.push_back(fixed.batch.batch);
    return keep_as_compiled("compiled at load by OpenVINO " +
                                std::string(ov::get_openvino_version().buildNumber) +
                                " for this CPU, in " + settings_.precision + ", " +
                                std::to_string(settings_.threads) + " threads per forward",
                            "also for static batch size", static_batches, report, notes);
  }

 private:
  // The IR compiled for one set of shapes, with its infer requests. A request holds its own
  // activations: one per forward running at once, kept for reuse (creating one costs more than
  // a small model's forward).
  struct Compiled {
    ov::CompiledModel model;
    std::vector<ov::Output<const ov::Node> > parameters;  // (inputs() returns a new vector)
    std::mutex idle_mutex;
    std::vector<ov::InferRequest> idle;
  };
  struct StaticCompiled {
    StaticBatchModel batch;
    std::unique_ptr<Compiled> compiled;
  };

  class Request {
   public:
    explicit Request(Compiled& owner) : owner_(owner) {
      std::lock_guard<std::mutex> lock(owner_.idle_mutex);
      if (!owner_.idle.empty()) {
        request_ = std::move(owner_.idle.back());
        owner_.idle.pop_back();
      }
      if (!request_) request_ = owner_.model.create_infer_request();
    }
    ~Request() {
      std::lock_guard<std::mutex> lock(owner_.idle_mutex);
      owner_.idle.push_back(std::move(request_));
    }
    ov::InferRequest* operator->() { return &request_; }

   private:
    Compiled& owner_;
    ov::InferRequest request_;
  };

  // `model` compiled for this CPU; `name` is a static model's, "" for the dynamic one.
  std::unique_ptr<Compiled> compile(const std::shared_ptr<ov::Model>& model,
                                    const std::string& name) const {
    auto compiled = std::make_unique<Compiled>();
    std::string what = name.empty() ? "its IR" : "its IR at " + name;
    try {
      compiled->model = core().compile_model(model, "CPU", compile_properties(settings_));
    } catch (const std::exception& e) {
      // The IR read, so the precision asked for is what this CPU (or a oneDNN limited by
      // ONEDNN_MAX_CPU_ISA) cannot run.
      if (settings_.precision == "bf16") {
        throw unsupported("cannot load " + path_ +
                          " in bf16: OpenVINO cannot compile it for "
                          "bf16 on this CPU (" +
                          openvino_reason(e) + "); load it in fp32");
      }
      throw bad_model("cannot load " + path_ + ": OpenVINO cannot compile " + what + ": " +
                      openvino_reason(e));
    }
    compiled->parameters = compiled->model.inputs();
    return compiled;
  }

  // A copy of `model` (sharing its weights) whose batched inputs take exactly fixed.batch rows.
  std::shared_ptr<ov::Model> with_batch(const ov::Model& model, const StaticBatchModel& fixed) {
    auto copy = model.clone();
    std::map<size_t, ov::PartialShape> shapes;
    for (size_t argument : fixed.arguments) {
      size_t position = call_->flat_position(argument);
      if (position >= copy->inputs().size() ||
          copy->input(position).get_partial_shape().rank().is_dynamic()) {
        throw bad_model("cannot load " + path_ + ": export.static_batches names argument " +
                        std::to_string(argument) + ", which is not a tensor input of its IR");
      }
      ov::PartialShape shape = copy->input(position).get_partial_shape();
      shape[0] = fixed.batch;
      shapes[position] = shape;
    }
    try {
      copy->reshape(shapes);
    } catch (const std::exception& e) {
      throw bad_model("cannot load " + path_ + ": its IR does not take a batch of " +
                      std::to_string(fixed.batch) + ": " + openvino_reason(e));
    }
    return copy;
  }

  // The model compiled for these inputs' batch size, if any, else the dynamic one.
  Compiled& compiled_for(const std::vector<c10::IValue>& inputs) const {
    for (const auto& fixed : statics_) {
      if (takes_static_batch(fixed.batch, inputs)) return *fixed.compiled;
    }
    return *dynamic_;
  }

  // The tensor's memory as OpenVINO's input (no copy), refused in one line where the IR's
  // parameter takes another type or shape (an archive whose manifest describes no inputs).
  ov::Tensor as_ov_tensor(const at::Tensor& tensor, const ov::Output<const ov::Node>& parameter,
                          size_t index) const {
    ov::element::Type type = element_type(tensor.scalar_type());
    ov::Shape shape(tensor.sizes().begin(), tensor.sizes().end());
    if (type != parameter.get_element_type() ||
        !parameter.get_partial_shape().compatible(ov::PartialShape(shape))) {
      std::string wanted = "?";
      try {
        wanted = datatype_name(scalar_type(parameter.get_element_type(), ""));
      } catch (const Error&) {
      }
      throw bad_input("input tensor " + std::to_string(index) + ": the OpenVINO model takes " +
                      wanted + " " + parameter.get_partial_shape().to_string() + ", got " +
                      datatype_name(tensor.scalar_type()) + " " + shape_text(tensor.sizes()));
    }
    return ov::Tensor(type, shape, tensor.data_ptr());
  }

  static at::Tensor to_torch(const ov::Tensor& tensor, at::ScalarType type) {
    ov::Shape shape = tensor.get_shape();  // (a copy: begin() and end() of one shape)
    std::vector<int64_t> sizes(shape.begin(), shape.end());
    at::Tensor out = at::empty(sizes, at::TensorOptions().dtype(type));
    std::memcpy(out.data_ptr(), tensor.data(), tensor.get_byte_size());
    return out;
  }

  void count_parameters(const ov::Model& model) {
    for (const auto& op : model.get_ordered_ops()) {
      auto constant = std::dynamic_pointer_cast<ov::op::v0::Constant>(op);
      if (!constant || !constant->get_element_type().is_real()) continue;
      summary_.parameter_count += static_cast<int64_t>(ov::shape_size(constant->get_shape()));
      summary_.parameter_bytes += static_cast<int64_t>(constant->get_byte_size());
    }
  }

  std::string path_;
  EngineSettings settings_;
  // The IR's weights: read_model shares its constants with this buffer rather than copying
  // them, and the compiled model may keep constants that its plugin did not repack.
  std::string weights_;
  std::optional<ExportedCall> call_;
  std::unique_ptr<Compiled> dynamic_;  // (its requests change under a const forward)
  std::vector<StaticCompiled> statics_;
  std::vector<at::ScalarType> output_types_;
  ModelSummary summary_;
};

}  // namespace

std::unique_ptr<Backend> open_openvino(const Archive& archive, const c10::Device& device,
                                       const EngineSettings& settings) {
  if (!device.is_cpu()) {
    throw unsupported("cannot load " + archive.path().string() + " on " + device.str() +
                      ": torchship runs OpenVINO archives on the CPU; export the model with "
                      "format='aoti' or 'torchscript' for " +
                      device.str());
  }
  return std::make_unique<OpenVinoBackend>(archive, settings);
}

#endif

}  // namespace torchship::backends
