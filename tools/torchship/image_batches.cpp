#include "image_batches.h"

#include "torchship/error.h"

namespace torchship {

ImageBatches::ImageBatches(const Model& model, std::vector<std::filesystem::path> paths,
                           size_t batch_size, Decode decode, bool prefetch)
    : model_(model),
      paths_(std::move(paths)),
      batch_size_(batch_size == 0 ? 1 : batch_size),
      decode_(decode),
      prefetch_(prefetch) {}

ImageBatches::~ImageBatches() {
  if (ahead_.valid()) ahead_.wait();
}

ImageBatch ImageBatches::decode_batch(size_t start) const {
  ImageBatch batch;
  size_t end = std::min(paths_.size(), start + batch_size_);
  for (size_t i = start; i < end; ++i) {
    try {
      batch.inputs.push_back(model_.image_input(paths_[i], 0, decode_));
      batch.paths.push_back(paths_[i]);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::BadInput) throw;
      batch.failures.push_back({paths_[i], e.what()});
    }
  }
  return batch;
}

std::optional<ImageBatch> ImageBatches::next() {
  if (!ahead_.valid() && next_start_ >= paths_.size()) return std::nullopt;
  ImageBatch batch;
  if (ahead_.valid()) {
    batch = ahead_.get();
  } else {
    batch = decode_batch(next_start_);
    next_start_ += batch_size_;
  }
  if (prefetch_ && next_start_ < paths_.size()) {
    ahead_ =
        std::async(std::launch::async, [this, start = next_start_] { return decode_batch(start); });
    next_start_ += batch_size_;
  }
  return batch;
}

}  // namespace torchship
