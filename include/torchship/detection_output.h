// What a detector's result becomes for people and programs: JSON and a drawing on the image.
#pragma once

#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "torchship/model.h"

namespace torchship {

// {"box": [x1, y1, x2, y2], "score", "index", "label", "keypoints": [{"name", "x", "y"}]}: one
// object as the CLI's --json and the server's /detect give it.
nlohmann::json detection_json(const Detection& detection);

// A copy of the uint8 H x W x 3 RGB image with each detection's box, its label and score above
// it, and its keypoints drawn; one colour per class, lines as thick as the image is large.
at::Tensor draw_detections(const at::Tensor& hwc_rgb, const std::vector<Detection>& detections);

}  // namespace torchship
