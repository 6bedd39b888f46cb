// A detector's objects as JSON, and drawn with OpenCV on a copy of the image.
#include "torchship/detection_output.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

#include "torchship/error.h"
#include "torchship/value_tree.h"

namespace torchship {
namespace {

// Distinct, saturated RGB colours; classes cycle through them.
const cv::Scalar kPalette[] = {{255, 56, 56},  {255, 157, 151}, {255, 112, 31},  {255, 178, 29},
                               {207, 210, 49}, {72, 249, 10},   {26, 147, 52},   {0, 212, 187},
                               {0, 194, 255},  {52, 69, 147},   {100, 115, 255}, {236, 24, 235}};
constexpr size_t kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

cv::Scalar colour_of(int64_t index) {
  return kPalette[static_cast<size_t>(std::max<int64_t>(0, index)) % kPaletteSize];
}

int clamp_to_int(float value) {
  if (!std::isfinite(value)) return 0;
  return static_cast<int>(std::clamp(value, -1e6f, 1e6f));
}

}  // namespace

nlohmann::json detection_json(const Detection& detection) {
  nlohmann::json keypoints = nlohmann::json::array();
  for (const auto& point : detection.keypoints) {
    keypoints.push_back({{"name", point.name}, {"x", point.x}, {"y", point.y}});
  }
  return {{"box", {detection.x1, detection.y1, detection.x2, detection.y2}},
          {"score", detection.score},
          {"index", detection.label},
          {"label", detection.label_name},
          {"keypoints", keypoints}};
}

at::Tensor draw_detections(const at::Tensor& hwc_rgb, const std::vector<Detection>& detections) {
  if (hwc_rgb.scalar_type() != at::kByte || hwc_rgb.dim() != 3 || hwc_rgb.size(2) != 3) {
    throw bad_input("draw_detections needs a uint8 H x W x 3 RGB image, got " + describe(hwc_rgb));
  }
  at::Tensor canvas = hwc_rgb.to(at::kCPU).clone().contiguous();
  cv::Mat image(static_cast<int>(canvas.size(0)), static_cast<int>(canvas.size(1)), CV_8UC3,
                canvas.data_ptr<uint8_t>());
  const int side = std::min(image.rows, image.cols);
  const int thickness = std::max(1, side / 300);
  const double font_scale = std::max(0.4, side / 1200.0);
  const int radius = std::max(2, side / 150);

  for (const auto& detection : detections) {
    cv::Scalar colour = colour_of(detection.label);
    cv::Point top_left(clamp_to_int(detection.x1), clamp_to_int(detection.y1));
    cv::Point bottom_right(clamp_to_int(detection.x2), clamp_to_int(detection.y2));
    cv::rectangle(image, top_left, bottom_right, colour, thickness, cv::LINE_AA);

    char score[32];
    std::snprintf(score, sizeof score, "%.2f", detection.score);
    std::string caption =
        (detection.label_name.empty() ? std::string() : detection.label_name + " ") + score;
    int baseline = 0;
    cv::Size text =
        cv::getTextSize(caption, cv::FONT_HERSHEY_SIMPLEX, font_scale, thickness, &baseline);
    // Above the box when it fits, else inside its top edge.
    int text_top = top_left.y - text.height - baseline - thickness;
    if (text_top < 0) text_top = top_left.y + thickness;
    cv::rectangle(image, cv::Point(top_left.x, text_top),
                  cv::Point(top_left.x + text.width + 2 * thickness,
                            text_top + text.height + baseline + thickness),
                  colour, cv::FILLED);
    cv::putText(image, caption, cv::Point(top_left.x + thickness, text_top + text.height),
                cv::FONT_HERSHEY_SIMPLEX, font_scale, cv::Scalar(255, 255, 255), thickness,
                cv::LINE_AA);

    for (size_t k = 0; k < detection.keypoints.size(); ++k) {
      const auto& point = detection.keypoints[k];
      cv::circle(image, cv::Point(clamp_to_int(point.x), clamp_to_int(point.y)), radius,
                 colour_of(static_cast<int64_t>(k) + 3), cv::FILLED, cv::LINE_AA);
    }
  }
  return canvas;
}

}  // namespace torchship
