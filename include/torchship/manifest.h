// The manifest (`torchship.json` inside an archive): what the model expects and returns.
// Schema: docs/manifest.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace torchship {

constexpr int kManifestFormatVersion = 1;

enum class ColorOrder { RGB, BGR, Gray };

enum class ResizeMode {
  None,     // the model takes any size
  Stretch,  // resize to exactly (height, width), ignoring aspect ratio (cv2.resize)
};

enum class Interpolation { Nearest, Linear, Area, Cubic };

struct ResizePolicy {
  ResizeMode mode = ResizeMode::None;
  int64_t height = 0;
  int64_t width = 0;
  Interpolation interpolation = Interpolation::Linear;
};

// How an image file becomes this input: decoded, converted to `color`, resized, laid out.
struct ImageSpec {
  ColorOrder color = ColorOrder::RGB;
  ResizePolicy resize;
};

struct TensorSpec {
  std::string name;
  std::string datatype;        // KServe v2 name: "UINT8", "FP32", ...; empty if not a tensor
  std::vector<int64_t> shape;  // -1 for a free dimension; empty if unknown
  std::string layout;          // "HWC", "BHWC", "CHW", "BCHW" for images; empty otherwise
  std::optional<ImageSpec> image;
  std::string kind;  // free-form role of an output: "logits", "probabilities", "labels", ...
  // For inputs of compiled (AOTInductor) packages: the sizes the compiled code accepts in each
  // free dimension, {dim: {min, max}} (export.dynamic_dims).
  std::map<int64_t, std::pair<int64_t, int64_t>> size_ranges;
};

enum class BoxFormat {
  XYXY,    // x1 y1 x2 y2: corners
  XYWH,    // x1 y1 width height
  CXCYWH,  // centre x, centre y, width, height
};

enum class BoxFrame {
  Pixels,      // pixels of the image input as the model receives it (after the manifest's resize)
  Normalized,  // fractions 0..1 of that input's width and height
};

// Task "detection": which outputs hold what, one row per object (docs/manifest.md).
struct DetectionSpec {
  std::string boxes;      // [N, 4] in box_format and box_frame
  std::string scores;     // [N]
  std::string labels;     // [N] class indices into Manifest::labels; "" when the model has none
  std::string keypoints;  // [N, K, 2 or 3] x y (score) in the boxes' frame; "" when none
  std::vector<std::string> keypoint_names;  // K names, or empty
  BoxFormat box_format = BoxFormat::XYXY;
  BoxFrame box_frame = BoxFrame::Pixels;
};

// The CPU a compiled (AOTInductor) package was built for.
struct CpuTarget {
  std::string target;                 // "native" (the exporting CPU) or "x86-64-v3", ...
  std::string vec_isa;                // AOTInductor's vector ISA: "avx512", "avx2", ...
  std::vector<std::string> features;  // what its code may use, as /proc/cpuinfo names them
};

// How an AOTInductor package takes a forward argument: "tensor", "tensors" (a container of
// tensors, flattened) or "constant" (a value torch.export baked in; the package ignores it).
struct ExportedArgument {
  std::string name;
  std::string kind;
  std::string value;  // a constant's value as JSON text ("3"), "" when not recorded
};

// A model compiled with the batch size fixed, beside the dynamic one (export.static_batches):
// in an AOTInductor package, compiled at export; from an OpenVINO archive's IR, at load. A
// request of exactly that batch size runs it.
struct StaticBatchModel {
  int64_t batch = 0;
  std::string model;              // its name (AOTInductor: data/aotinductor/<model>/)
  std::vector<size_t> arguments;  // the forward arguments whose dimension 0 is the batch
};

// A form in an archive of every form (export.forms), and one that did not export
// (export.left_out), as the exporter recorded them.
struct ExportedForm {
  std::string format;  // "torchscript", "aoti", "openvino"
  std::string record;  // forms/<file>
  int64_t bytes = 0;
  double seconds = 0;  // to export and verify it
};
struct LeftOutForm {
  std::string format;
  std::string reason;  // the exporter's first line
};

struct ExportInfo {
  std::string format;  // "torchscript", "aoti", "openvino", "auto"; empty before AOTInductor
  std::string method;  // trace, script or hybrid; torch.export for AOTInductor packages
  std::string torch_version;
  std::string torchship_version;
  std::string created;                      // ISO 8601 UTC
  std::string quantized_engine;             // int8 only: the kernel library it was quantized for
  CpuTarget cpu;                            // AOTInductor packages only
  std::vector<ExportedArgument> arguments;  // AOTInductor packages only
  std::vector<StaticBatchModel> static_batches;  // AOTInductor and OpenVINO only
  std::vector<ExportedForm> forms;               // archives of every form only
  std::vector<LeftOutForm> left_out;             // archives of every form only
  std::string precision;  // archives of every form: "auto" where bf16 may be chosen at load
};

struct Manifest {
  int format_version = kManifestFormatVersion;
  std::string name;
  std::string task = "generic";  // classification, segmentation, detection or generic
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  std::vector<std::string> labels;
  bool batch_dim = false;          // the first dimension of every input and output is a batch
  std::string precision = "fp32";  // fp32, bf16 or int8: the arithmetic chosen at export
  std::optional<DetectionSpec> detection;  // exactly when task is "detection"
  ExportInfo exported;
  std::string source;  // the manifest's JSON text, as stored in the archive

  // Parses and validates; throws Error(BadModel) naming the offending field.
  static Manifest parse(const std::string& json_text);

  const TensorSpec* find_output(const std::string& name) const;
  // The label of a class index, or "" when the manifest has none for it.
  std::string label(int64_t index) const;
};

const char* to_string(ColorOrder color) noexcept;

}  // namespace torchship
