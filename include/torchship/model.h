// Model: a loaded archive, ready to run. The one type an embedding application needs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/script.h>

#include "torchship/archive.h"
#include "torchship/image.h"
#include "torchship/manifest.h"
#include "torchship/optimization.h"
#include "torchship/signature.h"
#include "torchship/weights_update.h"

namespace torchship {

// Per-model options. Settings libtorch keeps per process (threads, TorchScript's executor) are
// configured once with configure_runtime() (runtime.h).
struct LoadOptions {
  std::string device = "cpu";  // "cpu", "cuda", "cuda:1", ... (torch::Device syntax)
  // TorchScript: replace the module by a faster one that reproduces the stored module's outputs
  // within tolerance: on the golden vectors, else on inputs synthesized from the manifest, else
  // (a plain torch.jit.save archive) on the first forward's own inputs, which is answered by
  // the stored module. The candidates (kOptimizationCandidates: frozen with prepacked oneDNN
  // convolutions, frozen + optimize_for_inference, frozen only) are each verified and timed on
  // those inputs, and the fastest is kept only if it beats the module as stored; otherwise the
  // model runs as stored. optimization() and notes() say what was tried and the times.
  // AOTInductor packages are compiled already.
  bool optimize = true;
  // Which candidate: "auto" (measure them all, as above), or one's name (verified, not timed:
  // a choice an earlier load made, so that a server does not time again at each start), or
  // "stored" (the same as optimize = false).
  std::string optimization = "auto";
  // Forward runs on the archive's first golden case right after loading, so that the first
  // real request does not pay for the executor's profiling and optimization.
  int warmup_runs = 2;
  // Custom-operator libraries to load before the archive (.so / .dll). torchvision's operator
  // library is found and loaded automatically when an archive needs torchvision::* operators.
  std::vector<std::filesystem::path> extensions;
  // Rerun the archive's golden vectors after loading and refuse a model that does not
  // reproduce them (see golden.h); archives without golden vectors load as usual.
  bool check_golden = false;
  // Images (files and uploads) larger than this many pixels are refused from their header,
  // before decoding: a small file can claim a size that would exhaust memory.
  int64_t max_image_pixels = kDefaultMaxImagePixels;
  // Forwards that may run at once (from several threads): an AOTInductor package keeps one
  // runner, with its own activation buffers, per concurrent forward (weights are shared);
  // TorchScript needs nothing per forward.
  int concurrent_forwards = 1;
  // The precision an engine that chooses it at load computes in: "fp32" (what the golden
  // vectors were recorded in); "bf16" (OpenVINO forms; checked against the golden vectors at
  // bf16's tolerance when check_golden is set); "auto": fp32, and the OpenVINO form in bf16 too
  // where this CPU computes bf16 natively (AVX512-BF16 or AMX), kept only where every golden
  // case agrees within bf16's tolerance and, for classification, top-1 agrees with fp32 on at
  // least 99% of the golden inputs' rows, then timed like the other forms (notes() give the
  // agreement); "" (the default): the archive's, fp32 unless it was exported with
  // precision="auto". Other formats carry their precision in the archive and refuse "bf16".
  std::string precision;
  // Threads of each forward for an engine that sizes its own pool at load (OpenVINO's TBB
  // workers): 0 takes libtorch's intra-op count (runtime.h), so that models of every engine in
  // one process share the same CPU budget. libtorch's own forwards follow the calling thread's
  // OpenMP setting instead.
  int threads = 0;
  // Which form of an archive of every form (format="auto") runs: "auto" loads each, keeps
  // those that reproduce their golden vectors here, times them on those inputs and runs the
  // fastest (notes() give the times); "torchscript", "aoti" or "openvino" loads that one only
  // (a choice an earlier load made: a server records it in config.json). An archive of one
  // form takes "auto" or its own format.
  std::string engine = "auto";

  LoadOptions& with_engine(std::string value) {
    engine = std::move(value);
    return *this;
  }
  LoadOptions& with_precision(std::string value) {
    precision = std::move(value);
    return *this;
  }
  LoadOptions& with_threads(int value) {
    threads = value;
    return *this;
  }
  LoadOptions& with_optimize(bool value) {
    optimize = value;
    return *this;
  }
  LoadOptions& with_optimization(std::string candidate) {
    optimization = std::move(candidate);
    return *this;
  }
  LoadOptions& with_warmup(int runs) {
    warmup_runs = runs;
    return *this;
  }
  LoadOptions& with_golden_check(bool value = true) {
    check_golden = value;
    return *this;
  }
  LoadOptions& with_device(std::string value) {
    device = std::move(value);
    return *this;
  }
  LoadOptions& with_concurrent_forwards(int count) {
    concurrent_forwards = count;
    return *this;
  }
  LoadOptions& with_max_image_pixels(int64_t pixels) {
    max_image_pixels = pixels;
    return *this;
  }
  LoadOptions& with_extension(std::filesystem::path library) {
    extensions.push_back(std::move(library));
    return *this;
  }
};

struct Prediction {
  int64_t index = 0;
  std::string label;  // from the manifest, "" when it has none
  double score = 0;   // softmax probability when the output is logits, else the raw value
};

struct Segmentation {
  at::Tensor labels;   // H x W int64 class indices
  at::Tensor overlay;  // H x W x 3 uint8 RGB, or undefined when the model returns none
  at::Tensor logits;   // C x H x W float scores, or undefined when the model returns none
};

// One object a detector found, in the pixels of the image it was given (the manifest's box
// format and frame undone: x1 y1 x2 y2 corners, the input's resize mapped back).
struct Detection {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  double score = 0;
  int64_t label = -1;      // class index; 0 when the manifest has one label and no labels output
  std::string label_name;  // from the manifest, "" when it has none
  struct Keypoint {
    float x = 0, y = 0;
    std::string name;  // from the manifest's keypoint_names, "" when it has none
  };
  std::vector<Keypoint> keypoints;
};

class Model {
 public:
  // Opens and validates the archive, loads custom-operator libraries, loads the module onto the
  // device, switches it to eval mode. Throws Error (BadModel, BadInput, Unsupported).
  static Model load(const std::filesystem::path& path, const LoadOptions& options = {});
  // The same, from an archive already opened.
  static Model load(const Archive& archive, const LoadOptions& options = {});

  // This model with the weights of `update` (torchship.export_weights): the same form, loaded
  // as this one was (its optimization, precision, device, runners) from the same archive, the
  // compiled code reused (an AOTInductor package's library is not compiled or mapped again),
  // and the update's golden vectors checked before it is returned. This model is unchanged and
  // goes on serving; a server swaps the two once the new one is returned. Throws
  // Error(BadInput) for an update of another model or form (the first difference named),
  // Error(BadModel) when the new weights do not reproduce the update's golden vectors.
  Model with_weights(const WeightsUpdate& update) const;

  // TorchScript, AOTInductor or OpenVINO: which backend runs it (for an archive of every form,
  // the form chosen at load; archive() is then that form's).
  ModelFormat format() const;
  // What it computes in: "bf16" when chosen at load (LoadOptions::precision), else the
  // archive's own (the manifest's precision; "fp32" without a manifest).
  std::string precision() const;
  const Archive& archive() const;
  const std::optional<Manifest>& manifest() const;
  c10::Device device() const;
  // The update whose weights it runs with; null when it runs with its archive's own.
  const WeightsUpdate* weights_update() const;
  // forward's arguments, `self` excluded.
  const std::vector<Argument>& inputs() const;
  const c10::TypePtr& output_type() const;
  // forward's signature: "forward(image: Tensor) -> Tensor".
  std::string signature() const;
  ModelSummary summary() const;  // of the model as stored, before any optimization
  bool optimized() const;
  // What was tried, verified and timed, and which candidate runs (a copy; a plain archive's
  // first forward fills it).
  OptimizationReport optimization() const;
  // The largest batch forward takes when the manifest declares a batch dimension: what a
  // compiled package's batch range allows, or no limit (nullopt) for TorchScript.
  std::optional<int64_t> max_batch_size() const;
  // What load decided and the caller may want to know ("not optimized: ...").
  // A copy: a plain archive's first forward adds what its optimization came to.
  std::vector<std::string> notes() const;

  // Runs forward under c10::InferenceMode. Inputs are checked against the signature and the
  // manifest (count, type, dtype, rank) and moved to the model's device; tensors in the result
  // stay on that device. Throws Error(BadInput) for inputs that do not fit or that the model
  // rejects, Error(Internal) when the model fails on an input its manifest pins down.
  c10::IValue forward(std::vector<c10::IValue> inputs) const;
  // Throws Error(BadInput) unless forward takes `count` inputs (arguments with defaults may be
  // left out).
  void check_input_count(size_t count) const;
  // Throws Error(BadInput) unless `inputs` fit the forward schema and the manifest's specs
  // (types, datatypes, ranks and fixed sizes): what forward() checks before it runs.
  void check_inputs(const std::vector<c10::IValue>& inputs) const;

  // The image file as forward's argument `index` expects it: decoded and resized per the
  // manifest, in its layout and dtype; uint8 HWC RGB when the manifest says nothing.
  c10::IValue image_input(const std::filesystem::path& image, size_t index = 0,
                          Decode decode = Decode::Exact) const;
  c10::IValue image_input(const at::Tensor& hwc_rgb, size_t index = 0) const;
  // The same from encoded image bytes (an upload); `origin` names them in error messages.
  c10::IValue image_input_from_bytes(std::string_view bytes, size_t index = 0,
                                     std::string_view origin = "image bytes") const;

  // Typed helpers for manifests with task "classification" / "segmentation".
  std::vector<Prediction> classify(const std::filesystem::path& image, int top_k = 5) const;
  std::vector<Prediction> classify(const at::Tensor& hwc_rgb, int top_k = 5) const;
  // Classifies several images prepared by image_input(). When the manifest declares a batch
  // dimension and the images have one size, they run as real batches of up to `batch_size`
  // (one forward per batch); otherwise one forward each. One result per image, in order.
  std::vector<std::vector<Prediction>> classify_batch(const std::vector<c10::IValue>& images,
                                                      int top_k = 5, size_t batch_size = 32) const;
  // Top-k of an already computed classification output (logits or probabilities) for one image.
  std::vector<Prediction> top_k(const c10::IValue& output, int k) const;
  // Top-k per row of a batched output (B x C scores).
  std::vector<std::vector<Prediction>> top_k_rows(const c10::IValue& output, int k) const;
  Segmentation segment(const std::filesystem::path& image) const;
  Segmentation segment(const at::Tensor& hwc_rgb) const;
  // Task "detection": the objects found in the image with a score of at least min_score, in
  // the model's order. Throws Error(BadModel) unless the manifest declares a detection task.
  std::vector<Detection> detect(const std::filesystem::path& image, double min_score = 0) const;
  std::vector<Detection> detect(const at::Tensor& hwc_rgb, double min_score = 0) const;
  // The image as a detector's forward takes it: image_input(), in a list of one image when
  // forward takes a list of images (as torchvision's detectors do).
  c10::IValue detector_input(const at::Tensor& hwc_rgb) const;
  // The objects in an already computed output of a detector for an image of image_height x
  // image_width pixels, given to it as detector_input() prepared it.
  std::vector<Detection> detections(const c10::IValue& output, int64_t image_height,
                                    int64_t image_width, double min_score = 0) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace torchship
