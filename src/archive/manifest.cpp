#include "torchship/manifest.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <limits>

#include "torchship/datatype.h"
#include "torchship/error.h"
#include "torchship/json_input.h"
#include "torchship/limits.h"

namespace torchship {
namespace {

using nlohmann::json;

// Reads a manifest field with a message that names its path when it is missing or mistyped.
class FieldReader {
 public:
  FieldReader(const json& object, std::string path) : object_(object), path_(std::move(path)) {
    if (!object_.is_object()) fail("", "an object", object_);
  }

  template <typename T>
  T get(const char* key, const T& fallback) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return fallback;
    return convert<T>(key, *it);
  }

  template <typename T>
  T require(const char* key) const {
    auto it = object_.find(key);
    if (it == object_.end()) {
      throw bad_model("invalid manifest: missing field '" + field(key) + "'");
    }
    return convert<T>(key, *it);
  }

  const json* child(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  std::string field(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }

  [[noreturn]] void fail(const std::string& key, const std::string& expected,
                         const json& got) const {
    std::string where = key.empty() ? (path_.empty() ? "the manifest" : path_) : field(key);
    throw bad_model("invalid manifest: '" + where + "' must be " + expected + ", got " +
                    got.dump());
  }

 private:
  template <typename T>
  T convert(const char* key, const json& value) const {
    // nlohmann converts 1e300 to an integer without a word (undefined behaviour): refuse.
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      if (!value.is_number_integer()) fail(key, expected_name<T>(), value);
    }
    if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
      bool integers =
          value.is_array() && std::all_of(value.begin(), value.end(), [](const json& v) {
            return v.is_number_integer() &&
                   (!v.is_number_unsigned() ||
                    v.get<uint64_t>() <= uint64_t{std::numeric_limits<int64_t>::max()});
          });
      if (!integers) fail(key, expected_name<T>(), value);
    }
    try {
      return value.get<T>();
    } catch (const json::exception&) {
      fail(key, expected_name<T>(), value);
    }
  }

  template <typename T>
  static const char* expected_name() {
    if constexpr (std::is_same_v<T, std::string>) return "a string";
    if constexpr (std::is_same_v<T, bool>) return "true or false";
    if constexpr (std::is_integral_v<T>) return "an integer";
    if constexpr (std::is_same_v<T, std::vector<int64_t>>) return "a list of integers";
    if constexpr (std::is_same_v<T, std::vector<std::string>>) return "a list of strings";
    return "a value of another type";
  }

  const json& object_;
  std::string path_;
};

template <typename Enum, size_t N>
Enum parse_enum(const FieldReader& reader, const char* key, Enum fallback,
                const std::pair<const char*, Enum> (&names)[N]) {
  auto text = reader.get<std::string>(key, "");
  if (text.empty()) return fallback;
  for (const auto& [name, value] : names) {
    if (text == name) return value;
  }
  std::string expected = "one of";
  for (size_t i = 0; i < N; ++i) expected += std::string(i ? ", " : " ") + names[i].first;
  reader.fail(key, expected, text);
}

constexpr std::pair<const char*, ColorOrder> kColorNames[] = {
    {"RGB", ColorOrder::RGB}, {"BGR", ColorOrder::BGR}, {"GRAY", ColorOrder::Gray}};
constexpr std::pair<const char*, ResizeMode> kResizeNames[] = {{"none", ResizeMode::None},
                                                               {"stretch", ResizeMode::Stretch}};
constexpr std::pair<const char*, Interpolation> kInterpolationNames[] = {
    {"nearest", Interpolation::Nearest},
    {"linear", Interpolation::Linear},
    {"area", Interpolation::Area},
    {"cubic", Interpolation::Cubic}};

constexpr std::pair<const char*, BoxFormat> kBoxFormatNames[] = {
    {"xyxy", BoxFormat::XYXY}, {"xywh", BoxFormat::XYWH}, {"cxcywh", BoxFormat::CXCYWH}};
constexpr std::pair<const char*, BoxFrame> kBoxFrameNames[] = {
    {"pixels", BoxFrame::Pixels}, {"normalized", BoxFrame::Normalized}};

// detection: {"boxes", "scores", "labels", "keypoints", "keypoint_names", "box_format",
// "box_frame"}; each role names one of the manifest's outputs when it lists them.
DetectionSpec read_detection(const json& node, const std::vector<TensorSpec>& outputs) {
  FieldReader reader(node, "detection");
  DetectionSpec spec;
  spec.boxes = reader.require<std::string>("boxes");
  spec.scores = reader.require<std::string>("scores");
  spec.labels = reader.get<std::string>("labels", "");
  spec.keypoints = reader.get<std::string>("keypoints", "");
  spec.keypoint_names = reader.get<std::vector<std::string>>("keypoint_names", {});
  spec.box_format = parse_enum(reader, "box_format", BoxFormat::XYXY, kBoxFormatNames);
  spec.box_frame = parse_enum(reader, "box_frame", BoxFrame::Pixels, kBoxFrameNames);
  auto names_an_output = [&](const std::string& name) {
    return outputs.empty() ||
           std::any_of(outputs.begin(), outputs.end(),
                       [&](const TensorSpec& output) { return output.name == name; });
  };
  std::string listed;
  for (const auto& output : outputs) listed += (listed.empty() ? "" : ", ") + output.name;
  for (const auto& [key, name] : {std::pair<const char*, const std::string&>{"boxes", spec.boxes},
                                  {"scores", spec.scores},
                                  {"labels", spec.labels},
                                  {"keypoints", spec.keypoints}}) {
    if (!name.empty() && !names_an_output(name)) {
      reader.fail(key, "the name of an output (" + listed + ")", name);
    }
  }
  if (spec.keypoints.empty() && !spec.keypoint_names.empty()) {
    reader.fail("keypoint_names", "absent when there is no keypoints output", spec.keypoint_names);
  }
  return spec;
}

ImageSpec parse_image_spec(const json& node, const std::string& path) {
  FieldReader reader(node, path);
  ImageSpec spec;
  spec.color = parse_enum(reader, "color", ColorOrder::RGB, kColorNames);
  if (const json* resize = reader.child("resize")) {
    FieldReader resize_reader(*resize, reader.field("resize"));
    spec.resize.mode = parse_enum(resize_reader, "mode", ResizeMode::None, kResizeNames);
    spec.resize.interpolation =
        parse_enum(resize_reader, "interpolation", Interpolation::Linear, kInterpolationNames);
    if (spec.resize.mode == ResizeMode::Stretch) {
      auto size = resize_reader.require<std::vector<int64_t>>("size");
      if (size.size() != 2 || size[0] <= 0 || size[1] <= 0) {
        resize_reader.fail("size", "[height, width] with positive values", json(size));
      }
      if (size[0] > kDefaultMaxImagePixels / size[1]) {
        resize_reader.fail(
            "size",
            "[height, width] of at most " + std::to_string(kDefaultMaxImagePixels) + " pixels",
            json(size));
      }
      spec.resize.height = size[0];
      spec.resize.width = size[1];
    }
  }
  return spec;
}

TensorSpec parse_tensor_spec(const json& node, const std::string& path) {
  FieldReader reader(node, path);
  TensorSpec spec;
  spec.name = reader.require<std::string>("name");
  spec.datatype = reader.get<std::string>("datatype", "");
  if (!spec.datatype.empty()) {
    try {
      scalar_type_from_datatype(spec.datatype);
    } catch (const Error&) {
      reader.fail("datatype", "a KServe v2 datatype (UINT8, FP32, ...)", spec.datatype);
    }
  }
  spec.shape = reader.get<std::vector<int64_t>>("shape", {});
  std::vector<int64_t> fixed_sizes;  // free dimensions counted as 1
  for (int64_t dim : spec.shape) {
    if (dim < -1 || dim == 0) reader.fail("shape", "sizes > 0 or -1 (free)", json(spec.shape));
    fixed_sizes.push_back(dim == -1 ? 1 : dim);
  }
  try {
    checked_numel(fixed_sizes, "shape");
  } catch (const Error& e) {
    reader.fail("shape", "a tensor shape (" + std::string(e.what()) + ")", json(spec.shape));
  }
  spec.layout = reader.get<std::string>("layout", "");
  static const char* kLayouts[] = {"", "HWC", "BHWC", "CHW", "BCHW"};
  if (std::find(std::begin(kLayouts), std::end(kLayouts), spec.layout) == std::end(kLayouts)) {
    reader.fail("layout", "one of HWC, BHWC, CHW, BCHW", spec.layout);
  }
  if (const json* image = reader.child("image")) {
    spec.image = parse_image_spec(*image, reader.field("image"));
    if (spec.layout.empty()) spec.layout = "HWC";
  }
  spec.kind = reader.get<std::string>("kind", "");
  return spec;
}

std::vector<TensorSpec> parse_specs(const FieldReader& reader, const char* key) {
  std::vector<TensorSpec> specs;
  const json* list = reader.child(key);
  if (!list) return specs;
  if (!list->is_array()) reader.fail(key, "a list", *list);
  for (size_t i = 0; i < list->size(); ++i) {
    specs.push_back(
        parse_tensor_spec((*list)[i], reader.field(key) + "[" + std::to_string(i) + "]"));
  }
  return specs;
}

// export.dynamic_dims: {input name: {dim: {"name", "min", "max"}}}, onto the inputs' specs.
void read_size_ranges(const json& dynamic, std::vector<TensorSpec>& inputs) {
  FieldReader reader(dynamic, "export.dynamic_dims");
  for (const auto& item : dynamic.items()) {
    const std::string& name = item.key();  // (clang 14 cannot capture structured bindings)
    bool known = std::any_of(inputs.begin(), inputs.end(),
                             [&](const TensorSpec& spec) { return spec.name == name; });
    if (!known) {
      throw bad_model("invalid manifest: export.dynamic_dims names '" + name +
                      "', which is not an input of the manifest");
    }
  }
  for (auto& spec : inputs) {
    const json* dims = reader.child(spec.name.c_str());
    if (!dims) continue;
    FieldReader dims_reader(*dims, "export.dynamic_dims." + spec.name);
    for (const auto& [key, range] : dims->items()) {
      std::string where = "export.dynamic_dims." + spec.name + "." + key;
      int64_t dim = -1;
      if (key.empty() || key.size() > 2 ||
          key.find_first_not_of("0123456789") != std::string::npos ||
          (dim = std::stoll(key)) >= static_cast<int64_t>(spec.shape.size())) {
        throw bad_model("invalid manifest: " + where + " is not a dimension of input '" +
                        spec.name + "'");
      }
      if (!range.is_object()) continue;  // a name only: no range recorded
      FieldReader range_reader(range, where);
      int64_t low = range_reader.get<int64_t>("min", 1);
      int64_t high = range_reader.get<int64_t>("max", std::numeric_limits<int64_t>::max());
      if (low < 0 || high < low) {
        throw bad_model("invalid manifest: " + where + " is the range " + std::to_string(low) +
                        " to " + std::to_string(high));
      }
      spec.size_ranges[dim] = {low, high};
    }
  }
}

// export.static_batches: [{"batch", "model", "arguments"}]. The model name becomes a folder
// name inside the package: only letters, digits and '_'.
std::vector<StaticBatchModel> read_static_batches(const FieldReader& export_reader,
                                                  const json& list) {
  if (!list.is_array()) export_reader.fail("static_batches", "a list", list);
  std::vector<StaticBatchModel> models;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string where = "export.static_batches[" + std::to_string(i) + "]";
    FieldReader reader(list[i], where);
    StaticBatchModel model;
    model.batch = reader.require<int64_t>("batch");
    model.model = reader.require<std::string>("model");
    auto arguments = reader.get<std::vector<int64_t>>("arguments", {});
    if (model.batch < 1) reader.fail("batch", "a batch size of 1 or more", model.batch);
    bool plain = !model.model.empty() && model.model.size() <= 64 &&
                 std::all_of(model.model.begin(), model.model.end(),
                             [](unsigned char c) { return std::isalnum(c) || c == '_'; });
    if (!plain) reader.fail("model", "a name of letters, digits and '_'", model.model);
    if (arguments.empty())
      reader.fail("arguments", "the batched arguments' positions", json::array());
    for (int64_t argument : arguments) {
      if (argument < 0 || argument > 1024) {
        reader.fail("arguments", "argument positions from 0 to 1024", argument);
      }
      model.arguments.push_back(static_cast<size_t>(argument));
    }
    models.push_back(std::move(model));
  }
  return models;
}

// export.forms: [{"format", "record", "bytes", "seconds"}], export.left_out: [{"format",
// "reason"}] (what `info` shows; the archive's records say which forms there are).
void read_forms(const FieldReader& export_reader, ExportInfo& exported) {
  auto list = [&](const char* field) -> const json* {
    const json* found = export_reader.child(field);
    if (found && !found->is_array()) export_reader.fail(field, "a list", *found);
    return found;
  };
  if (const json* forms = list("forms")) {
    for (size_t i = 0; i < forms->size(); ++i) {
      FieldReader form((*forms)[i], "export.forms[" + std::to_string(i) + "]");
      exported.forms.push_back({form.require<std::string>("format"),
                                form.require<std::string>("record"), form.get<int64_t>("bytes", 0),
                                form.get<double>("seconds", 0)});
    }
  }
  if (const json* left_out = list("left_out")) {
    for (size_t i = 0; i < left_out->size(); ++i) {
      FieldReader form((*left_out)[i], "export.left_out[" + std::to_string(i) + "]");
      exported.left_out.push_back(
          {form.require<std::string>("format"), form.get<std::string>("reason", "")});
    }
  }
}

// torchship.json's text as JSON, or an error that says where it breaks.
json parse_manifest_json(const std::string& json_text) {
  json root;
  try {
    root = parse_json(json_text, "torchship.json");
  } catch (const Error& e) {
    throw bad_model(std::string("invalid manifest: ") + e.what());
  }
  if (root.is_discarded()) {
    // Parse again for nlohmann's account of where it breaks (the document is not deep); a
    // number too large for a double is its out_of_range, not a parse_error.
    std::string why = "not valid JSON";
    try {
      json discarded = json::parse(json_text);
    } catch (const json::exception& e) {
      why = e.what();
    }
    throw bad_model("invalid manifest: torchship.json is not valid JSON (" + why + ")");
  }
  return root;
}

// export.cpu: {"target", "vec_isa", "features"}.
CpuTarget read_cpu_target(const json& cpu) {
  FieldReader cpu_reader(cpu, "export.cpu");
  CpuTarget target;
  target.target = cpu_reader.get<std::string>("target", "");
  target.vec_isa = cpu_reader.get<std::string>("vec_isa", "");
  target.features = cpu_reader.get<std::vector<std::string>>("features", {});
  return target;
}

// export.arguments: [{"name", "kind", "value"}], the value kept as JSON text.
std::vector<ExportedArgument> read_arguments(const FieldReader& export_reader,
                                             const json& arguments) {
  if (!arguments.is_array()) export_reader.fail("arguments", "a list", arguments);
  std::vector<ExportedArgument> read;
  for (size_t i = 0; i < arguments.size(); ++i) {
    FieldReader argument(arguments[i], "export.arguments[" + std::to_string(i) + "]");
    const json* value = argument.child("value");
    read.push_back({argument.get<std::string>("name", ""),
                    argument.get<std::string>("kind", "tensor"), value ? value->dump() : ""});
  }
  return read;
}

// export: how the archive was made; its dynamic_dims go onto the inputs' specs.
void read_export(const json& node, ExportInfo& exported, std::vector<TensorSpec>& inputs) {
  FieldReader export_reader(node, "export");
  exported.format = export_reader.get<std::string>("format", "");
  exported.method = export_reader.get<std::string>("method", "");
  exported.torch_version = export_reader.get<std::string>("torch_version", "");
  exported.torchship_version = export_reader.get<std::string>("torchship_version", "");
  exported.created = export_reader.get<std::string>("created", "");
  exported.quantized_engine = export_reader.get<std::string>("quantized_engine", "");
  if (const json* cpu = export_reader.child("cpu")) exported.cpu = read_cpu_target(*cpu);
  if (const json* dynamic = export_reader.child("dynamic_dims")) {
    read_size_ranges(*dynamic, inputs);
  }
  if (const json* arguments = export_reader.child("arguments")) {
    exported.arguments = read_arguments(export_reader, *arguments);
  }
  if (const json* statics = export_reader.child("static_batches")) {
    exported.static_batches = read_static_batches(export_reader, *statics);
  }
  read_forms(export_reader, exported);
  exported.precision = export_reader.get<std::string>("precision", "");
}

}  // namespace

Manifest Manifest::parse(const std::string& json_text) {
  json root = parse_manifest_json(json_text);
  FieldReader reader(root, "");
  Manifest manifest;
  manifest.format_version = reader.require<int>("format_version");
  if (manifest.format_version < 1 || manifest.format_version > kManifestFormatVersion) {
    throw bad_model("unsupported manifest format_version " +
                    std::to_string(manifest.format_version) + ": this torchship reads 1 to " +
                    std::to_string(kManifestFormatVersion) + "; upgrade torchship");
  }
  manifest.name = reader.get<std::string>("name", "");
  manifest.task = reader.get<std::string>("task", "generic");
  if (manifest.task != "classification" && manifest.task != "segmentation" &&
      manifest.task != "detection" && manifest.task != "generic") {
    reader.fail("task", "one of classification, segmentation, detection, generic", manifest.task);
  }
  manifest.inputs = parse_specs(reader, "inputs");
  manifest.outputs = parse_specs(reader, "outputs");
  if (const json* detection = reader.child("detection")) {
    manifest.detection = read_detection(*detection, manifest.outputs);
  }
  if (manifest.task == "detection" && !manifest.detection) {
    throw bad_model(
        "invalid manifest: task 'detection' needs a 'detection' section naming the boxes and "
        "scores outputs");
  }
  manifest.labels = reader.get<std::vector<std::string>>("labels", {});
  manifest.batch_dim = reader.get<bool>("batch_dim", false);
  manifest.precision = reader.get<std::string>("precision", "fp32");
  if (manifest.precision != "fp32" && manifest.precision != "bf16" &&
      manifest.precision != "int8") {
    reader.fail("precision", "one of fp32, bf16, int8", manifest.precision);
  }
  if (const json* exported = reader.child("export")) {
    read_export(*exported, manifest.exported, manifest.inputs);
  }
  manifest.source = json_text;
  return manifest;
}

const TensorSpec* Manifest::find_output(const std::string& output_name) const {
  for (const auto& spec : outputs) {
    if (spec.name == output_name) return &spec;
  }
  return nullptr;
}

std::string Manifest::label(int64_t index) const {
  if (index < 0 || index >= static_cast<int64_t>(labels.size())) return "";
  return labels[index];
}

const char* to_string(ColorOrder color) noexcept {
  switch (color) {
    case ColorOrder::RGB:
      return "RGB";
    case ColorOrder::BGR:
      return "BGR";
    case ColorOrder::Gray:
      return "GRAY";
  }
  return "RGB";
}

}  // namespace torchship
