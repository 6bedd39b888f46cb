// Model's state, shared by the files that implement its parts: model.cpp (loading, forward),
// preprocessing.cpp (image inputs), tasks/ (classification, segmentation).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "torchship/model.h"

namespace torchship {

struct Model::Impl {
  Archive archive;
  c10::Device device{c10::kCPU};
  std::unique_ptr<backends::Backend> backend;
  bool optimized = false;
  std::vector<std::string> notes;
  int64_t max_image_pixels = kDefaultMaxImagePixels;

  const Manifest* manifest() const { return archive.manifest() ? &*archive.manifest() : nullptr; }
  const TensorSpec* input_spec(size_t index) const {
    const Manifest* m = manifest();
    return m && index < m->inputs.size() ? &m->inputs[index] : nullptr;
  }
};

// The device a "cpu" / "cuda" / "cuda:N" string names, checked against this machine.
c10::Device parse_device(const std::string& text);

}  // namespace torchship
