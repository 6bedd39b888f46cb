// Model's classification task: top-k predictions from scores, for one image or batches.
#include "model/model_impl.h"
#include "torchship/error.h"
#include "torchship/value_tree.h"

namespace torchship {
namespace {

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

}  // namespace

std::vector<std::vector<Prediction>> Model::top_k_rows(const c10::IValue& output, int k) const {
  const Manifest* manifest = impl_->manifest();
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
  if (auto largest = max_batch_size()) {
    batch_size = std::min(batch_size, static_cast<size_t>(std::max<int64_t>(1, *largest)));
  }
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

}  // namespace torchship
