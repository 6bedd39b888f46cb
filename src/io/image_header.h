// The size of an encoded image, read from its header without decoding it: uploads are measured
// before a decoder allocates anything for them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace torchship {

struct ImageHeader {
  const char* format = "";  // "PNG", "JPEG", ...
  // Pixels across and down as the header states them; nullopt when the header of a recognized
  // format is truncated or malformed.
  std::optional<std::pair<int64_t, int64_t>> size;
  // Pixels of the largest buffer the decoder allocates, where that can exceed width x height
  // (a TIFF's tiles or strips); 0 otherwise.
  int64_t buffer_pixels = 0;
};

// nullopt when the bytes start like none of the formats OpenCV decodes here (PNG, JPEG, BMP,
// TIFF and BigTIFF, WebP, PNM / PAM / PFM, Sun raster, Radiance HDR, JPEG 2000, OpenEXR).
std::optional<ImageHeader> read_image_header(std::string_view bytes);

// "PNG, JPEG, BMP, ...": for messages.
const char* image_formats_read();

}  // namespace torchship
