// Model's segmentation task: per-pixel labels (and logits, overlay) for one image.
#include "model/model_impl.h"
#include "torchship/error.h"
#include "torchship/value_tree.h"

namespace torchship {

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
