// Bridges for applications that already hold OpenCV images (camera frames, cv::imread results).
#pragma once

#include <ATen/core/Tensor.h>
#include <opencv2/core/mat.hpp>

#include "torchship/manifest.h"

namespace torchship {

// A BGR (3-channel) or grayscale (1-channel) 8-bit cv::Mat, as OpenCV decodes it, converted to
// a uint8 HWC tensor per spec (colour order, resize). No copy when nothing needs converting.
at::Tensor image_from_mat(const cv::Mat& bgr_or_gray, const ImageSpec& spec = {});

}  // namespace torchship
