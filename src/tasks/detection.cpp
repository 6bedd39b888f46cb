// Model's detection task: the objects in one image (boxes, scores, labels, keypoints), read
// from the outputs the manifest's detection section names and mapped back to the image's pixels.
#include <map>

#include "model/model_impl.h"
#include "torchship/error.h"
#include "torchship/image.h"
#include "torchship/value_tree.h"

namespace torchship {
namespace {

using NamedOutputs = std::map<std::string, at::Tensor>;

// The output's tensors by name: a tuple's elements (or a single tensor) named by the manifest's
// outputs in order, or a dict's keys. torchvision's detectors return one dict per image in a
// list: a list of one dict is read as that dict.
NamedOutputs outputs_by_name(const c10::IValue& output, const Manifest& manifest) {
  NamedOutputs named;
  if (output.isTensor() && !manifest.outputs.empty()) {
    named[manifest.outputs[0].name] = output.toTensor();
  } else if (output.isTuple()) {
    const auto& elements = output.toTupleRef().elements();
    for (size_t i = 0; i < elements.size() && i < manifest.outputs.size(); ++i) {
      if (elements[i].isTensor()) named[manifest.outputs[i].name] = elements[i].toTensor();
    }
  } else if (output.isGenericDict()) {
    for (const auto& entry : output.toGenericDict()) {
      if (entry.key().isString() && entry.value().isTensor()) {
        named[entry.key().toStringRef()] = entry.value().toTensor();
      }
    }
  } else if (output.isList() && output.toListRef().size() == 1) {
    return outputs_by_name(output.toListRef()[0], manifest);
  }
  return named;
}

// The output playing `role`, on the CPU, with a leading batch dimension of one image dropped.
at::Tensor output_for(const NamedOutputs& named, const std::string& name, const char* role,
                      int64_t rank, const c10::IValue& output) {
  auto found = named.find(name);
  if (found == named.end()) {
    throw bad_model(std::string("detect: the manifest's detection.") + role + " is output '" +
                    name + "', which the model's output does not hold (it returned " +
                    describe(output) + ")");
  }
  at::Tensor tensor = found->second.to(at::kCPU);
  if (tensor.dim() == rank + 1 && tensor.size(0) == 1) tensor = tensor.squeeze(0);
  if (tensor.dim() != rank) {
    throw bad_model(std::string("detect: output '") + name + "' (" + role + ") must have " +
                    std::to_string(rank) + " dimensions, one row per object; it is " +
                    describe(tensor));
  }
  return tensor;
}

// N x 4 corners (x1 y1 x2 y2) from the manifest's box format.
at::Tensor corners(const at::Tensor& boxes, BoxFormat format) {
  auto column = [&](int64_t i) { return boxes.select(1, i); };
  switch (format) {
    case BoxFormat::XYXY:
      return boxes;
    case BoxFormat::XYWH:
      return at::stack({column(0), column(1), column(0) + column(2), column(1) + column(3)}, 1);
    case BoxFormat::CXCYWH:
      return at::stack({column(0) - column(2) / 2, column(1) - column(3) / 2,
                        column(0) + column(2) / 2, column(1) + column(3) / 2},
                       1);
  }
  return boxes;
}

void check_rows(const at::Tensor& tensor, int64_t rows, const std::string& name, const char* role) {
  if (tensor.size(0) != rows) {
    throw bad_model("detect: output '" + name + "' (" + role + ") has " +
                    std::to_string(tensor.size(0)) + " rows, the boxes " + std::to_string(rows));
  }
}

// The manifest's detection section; refuses models that declare none.
const DetectionSpec& detection_spec(const Manifest* manifest) {
  if (!manifest || !manifest->detection) {
    throw bad_model(
        "detect needs a model whose manifest declares task 'detection' (which outputs are "
        "boxes and scores); this one's task is '" +
        (manifest ? manifest->task : std::string("generic")) + "'");
  }
  return *manifest->detection;
}

// The outputs the manifest's detection section names, checked: boxes N x 4, then scores, labels
// and keypoints of N rows each.
struct DetectionOutputs {
  at::Tensor boxes;      // float
  at::Tensor scores;     // double
  at::Tensor labels;     // int64; undefined when the manifest names no labels output
  at::Tensor keypoints;  // float N x K x 2 or 3; undefined when the manifest names none
};

DetectionOutputs detection_outputs(const c10::IValue& output, const Manifest& manifest,
                                   const DetectionSpec& spec) {
  NamedOutputs named = outputs_by_name(output, manifest);
  DetectionOutputs outputs;
  outputs.boxes = output_for(named, spec.boxes, "boxes", 2, output).to(at::kFloat);
  if (outputs.boxes.size(1) != 4) {
    throw bad_model("detect: output '" + spec.boxes + "' (boxes) must be N x 4, it is " +
                    describe(outputs.boxes));
  }
  const int64_t rows = outputs.boxes.size(0);
  outputs.scores = output_for(named, spec.scores, "scores", 1, output).to(at::kDouble);
  check_rows(outputs.scores, rows, spec.scores, "scores");
  if (!spec.labels.empty()) {
    outputs.labels = output_for(named, spec.labels, "labels", 1, output).to(at::kLong);
    check_rows(outputs.labels, rows, spec.labels, "labels");
  }
  if (!spec.keypoints.empty()) {
    at::Tensor& keypoints = outputs.keypoints;
    keypoints = output_for(named, spec.keypoints, "keypoints", 3, output).to(at::kFloat);
    check_rows(keypoints, rows, spec.keypoints, "keypoints");
    if (keypoints.size(2) != 2 && keypoints.size(2) != 3) {
      throw bad_model("detect: output '" + spec.keypoints +
                      "' (keypoints) must be N x K x 2 (x y) or N x K x 3 (x y score), it is " +
                      describe(keypoints));
    }
  }
  return outputs;
}

// From the model's frame to the image's pixels: what x and y are multiplied by.
struct PixelScale {
  double x = 1;
  double y = 1;
};

PixelScale pixel_scale(const DetectionSpec& spec, const TensorSpec* input, int64_t image_height,
                       int64_t image_width) {
  // The size the image reached the model at: the manifest's, when it resizes.
  int64_t input_height = image_height;
  int64_t input_width = image_width;
  if (input && input->image && input->image->resize.mode == ResizeMode::Stretch) {
    input_height = input->image->resize.height;
    input_width = input->image->resize.width;
  }
  const bool normalized = spec.box_frame == BoxFrame::Normalized;
  PixelScale scale;
  scale.x = normalized ? image_width
                       : static_cast<double>(image_width) / std::max<int64_t>(1, input_width);
  scale.y = normalized ? image_height
                       : static_cast<double>(image_height) / std::max<int64_t>(1, input_height);
  return scale;
}

// One object's K keypoints (K x 2 or 3), in the image's pixels, named by the manifest.
std::vector<Detection::Keypoint> keypoints_in_pixels(const at::Tensor& points, PixelScale scale,
                                                     const std::vector<std::string>& names) {
  std::vector<Detection::Keypoint> keypoints;
  for (int64_t k = 0; k < points.size(0); ++k) {
    Detection::Keypoint point;
    point.x = static_cast<float>(points[k][0].item<float>() * scale.x);
    point.y = static_cast<float>(points[k][1].item<float>() * scale.y);
    if (static_cast<size_t>(k) < names.size()) point.name = names[static_cast<size_t>(k)];
    keypoints.push_back(std::move(point));
  }
  return keypoints;
}

}  // namespace

std::vector<Detection> Model::detections(const c10::IValue& output, int64_t image_height,
                                         int64_t image_width, double min_score) const {
  const Manifest* manifest = impl_->manifest();
  const DetectionSpec& spec = detection_spec(manifest);
  const PixelScale scale = pixel_scale(spec, impl_->manifest_input(0), image_height, image_width);
  DetectionOutputs outputs = detection_outputs(output, *manifest, spec);
  const int64_t rows = outputs.boxes.size(0);
  at::Tensor corner = corners(outputs.boxes, spec.box_format).contiguous();
  auto box = corner.accessor<float, 2>();
  auto score = outputs.scores.accessor<double, 1>();
  const at::Tensor& labels = outputs.labels;
  const bool one_class = labels.defined() ? false : manifest->labels.size() == 1;

  std::vector<Detection> found;
  for (int64_t row = 0; row < rows; ++row) {
    if (!(score[row] >= min_score)) continue;
    Detection detection;
    detection.x1 = static_cast<float>(box[row][0] * scale.x);
    detection.y1 = static_cast<float>(box[row][1] * scale.y);
    detection.x2 = static_cast<float>(box[row][2] * scale.x);
    detection.y2 = static_cast<float>(box[row][3] * scale.y);
    detection.score = score[row];
    if (labels.defined()) detection.label = labels[row].item<int64_t>();
    if (one_class) detection.label = 0;
    if (detection.label >= 0) detection.label_name = manifest->label(detection.label);
    if (outputs.keypoints.defined()) {
      detection.keypoints = keypoints_in_pixels(outputs.keypoints[row], scale, spec.keypoint_names);
    }
    found.push_back(std::move(detection));
  }
  return found;
}

c10::IValue Model::detector_input(const at::Tensor& hwc_rgb) const {
  c10::IValue image = image_input(hwc_rgb);
  const auto& arguments = inputs();
  if (!arguments.empty() && arguments[0].type->kind() == c10::TypeKind::ListType) {
    return c10::List<at::Tensor>({image.toTensor()});
  }
  return image;
}

std::vector<Detection> Model::detect(const at::Tensor& hwc_rgb, double min_score) const {
  detection_spec(impl_->manifest());
  return detections(forward({detector_input(hwc_rgb)}), hwc_rgb.size(0), hwc_rgb.size(1),
                    min_score);
}

std::vector<Detection> Model::detect(const std::filesystem::path& image, double min_score) const {
  detection_spec(impl_->manifest());  // before decoding
  return detect(decode_image(image, ImageSpec{}, Decode::Exact, impl_->max_image_pixels),
                min_score);
}

}  // namespace torchship
