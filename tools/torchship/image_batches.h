// Image files in batches for one model input, decoded on a background thread one batch ahead,
// so that decoding batch N+1 overlaps inference on batch N.
#pragma once

#include <cstddef>
#include <filesystem>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "torchship/image.h"
#include "torchship/model.h"

namespace torchship {

struct ImageBatch {
  struct Failure {
    std::filesystem::path path;
    std::string message;  // Error(BadInput)'s one-line message
  };
  std::vector<std::filesystem::path> paths;  // the images that decoded, in input order
  std::vector<c10::IValue> inputs;           // model.image_input() of each of them
  std::vector<Failure> failures;             // the images that did not decode
};

class ImageBatches {
 public:
  // The model must outlive this object. prefetch = false decodes each batch when asked for.
  ImageBatches(const Model& model, std::vector<std::filesystem::path> paths, size_t batch_size,
               Decode decode = Decode::Exact, bool prefetch = true);
  ~ImageBatches();
  ImageBatches(const ImageBatches&) = delete;
  ImageBatches& operator=(const ImageBatches&) = delete;

  // The next batch, or nullopt after the last. Undecodable images land in failures; any other
  // error (not BadInput) is rethrown here.
  std::optional<ImageBatch> next();

 private:
  ImageBatch decode_batch(size_t start) const;

  const Model& model_;
  std::vector<std::filesystem::path> paths_;
  size_t batch_size_;
  Decode decode_;
  bool prefetch_;
  size_t next_start_ = 0;
  std::future<ImageBatch> ahead_;
};

}  // namespace torchship
