// Images as tensors: decoding (any format OpenCV reads), colour order, resize policy, and
// writing results (overlays) back to files.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include <ATen/core/Tensor.h>

#include "torchship/limits.h"
#include "torchship/manifest.h"

namespace torchship {

// How far decoding may trade exactness for speed.
enum class Decode {
  // Full-size decode, then resize: the same pixels as cv2.imread + cv2.cvtColor + cv2.resize.
  Exact,
  // A JPEG at least 2x larger than spec's target size (both sides) is scaled down by 2, 4 or 8
  // inside the decoder (DCT scaling), then resized: 2-4x faster on camera photos; pixels differ
  // slightly from Exact. Other formats, and images too small to reduce, decode as Exact.
  Reduced,
};

// Decodes an image file into a uint8 HWC tensor in spec.color order (C = 3, or 1 for Gray),
// resized per spec.resize. The tensor shares OpenCV's buffer (no copy) and keeps it alive.
// The image's header is read first: a format OpenCV does not decode here, a corrupt header or
// more than `max_pixels` pixels (width x height) is refused before the decoder allocates.
// Throws Error(BadInput) for a missing file, bytes that are not an image, or one too large.
// PFM, Sun raster, Radiance HDR and OpenEXR decode from files only: OpenCV decodes their bytes
// through a temporary file, which a failed decode leaves behind, so decode_image_bytes refuses
// them.
at::Tensor decode_image(const std::filesystem::path& path, const ImageSpec& spec = {},
                        Decode decode = Decode::Exact, int64_t max_pixels = kDefaultMaxImagePixels);
at::Tensor decode_image_bytes(std::string_view bytes, const ImageSpec& spec = {},
                              std::string_view origin = "image bytes",
                              Decode decode = Decode::Exact,
                              int64_t max_pixels = kDefaultMaxImagePixels);

// Applies spec to an already decoded uint8 HWC RGB tensor (H x W x 3): colour, then resize.
at::Tensor prepare_image(const at::Tensor& hwc_rgb, const ImageSpec& spec);

// Writes a uint8 HWC tensor (RGB, or one channel) to an image file; format from the extension.
void write_image(const std::filesystem::path& path, const at::Tensor& hwc);

// True when the file name has an extension OpenCV can decode (.png, .jpg, .bmp, ...).
bool looks_like_image(const std::filesystem::path& path);

}  // namespace torchship
