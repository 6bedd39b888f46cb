// Model's state, shared by the files that implement its parts: model.cpp (loading, forward),
// preprocessing.cpp (image inputs), tasks/ (classification, segmentation).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "torchship/model.h"

namespace torchship {

struct Model::Impl {
  Archive archive;      // the form that runs, with a weights update laid over it
  Archive base_form;    // the same without the update: what with_weights() applies one to
  LoadOptions options;  // as given to load(), for with_weights()
  std::optional<WeightsUpdate> weights_update;
  c10::Device device{c10::kCPU};
  std::unique_ptr<backends::Backend> backend;
  std::atomic<bool> optimized{false};
  // Set when load could not verify an optimized module (no golden vectors, no shapes to
  // synthesize inputs from): the first forward's inputs verify it, under `optimizing`.
  std::atomic<bool> optimize_on_first_forward{false};
  std::mutex optimizing;
  std::vector<std::string> notes;
  OptimizationReport optimization;
  std::string wanted_optimization = "auto";  // LoadOptions::optimization
  std::string load_precision = "fp32";       // LoadOptions::precision
  int64_t max_image_pixels = kDefaultMaxImagePixels;

  // Verifies an optimized module on what load has: the golden vectors, or inputs synthesized
  // from the manifest; with neither, the first forward's inputs will.
  void prepare_optimization(const Model& model);
  // Optimizes the backend with the candidate that `miss` (rerun on the reference inputs) accepts
  // and that runs `inputs` fastest.
  void optimize(const std::function<std::string()>& miss, const std::vector<c10::IValue>& inputs,
                const std::string& against);
  // The backend's forward on the first inputs, which also verify the pending optimization.
  c10::IValue run_and_optimize(std::vector<c10::IValue> inputs);

  const Manifest* manifest() const { return archive.manifest() ? &*archive.manifest() : nullptr; }
  // The manifest's spec of forward's argument `index`, or null when it describes none.
  const TensorSpec* manifest_input(size_t index) const {
    const Manifest* m = manifest();
    return m && index < m->inputs.size() ? &m->inputs[index] : nullptr;
  }
};

}  // namespace torchship
