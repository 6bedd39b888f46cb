// Images as uint8 HWC tensors: OpenCV decodes, converts colour and resizes; the tensor borrows
// OpenCV's buffer and keeps the cv::Mat alive for as long as the tensor lives.
#include <fstream>
#include <iterator>
#include <limits>

#include <ATen/ATen.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/text.h"
#include "io/image_header.h"
#include "torchship/error.h"
#include "torchship/image.h"
#include "torchship/opencv.h"

namespace torchship {
namespace {

int cv_interpolation(Interpolation interpolation) {
  switch (interpolation) {
    case Interpolation::Nearest:
      return cv::INTER_NEAREST;
    case Interpolation::Area:
      return cv::INTER_AREA;
    case Interpolation::Cubic:
      return cv::INTER_CUBIC;
    case Interpolation::Linear:
      break;
  }
  return cv::INTER_LINEAR;
}

// Wraps a continuous 8-bit Mat as an H x W x C tensor that owns a reference to the Mat.
at::Tensor tensor_sharing(const cv::Mat& mat) {
  cv::Mat owner = mat.isContinuous() ? mat : mat.clone();
  std::vector<int64_t> sizes = {owner.rows, owner.cols, owner.channels()};
  auto* holder = new cv::Mat(owner);
  return at::from_blob(
      holder->data, sizes, [holder](void*) { delete holder; },
      at::TensorOptions().dtype(at::kByte));
}

// The Mat viewing a uint8 HWC tensor's memory (no copy); the tensor must outlive it.
cv::Mat mat_viewing(const at::Tensor& hwc) {
  return cv::Mat(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)),
                 CV_8UC(static_cast<int>(hwc.size(2))), hwc.data_ptr());
}

// `from` is the colour order of `mat` (RGB, BGR or Gray by channel count); returns it in `to`.
cv::Mat convert_color(const cv::Mat& mat, ColorOrder from, ColorOrder to) {
  if (mat.channels() == 1) from = ColorOrder::Gray;
  if (from == to) return mat;
  static const int kCodes[3][3] = {
      // to:   RGB                 BGR                  Gray
      /*RGB*/ {-1, cv::COLOR_RGB2BGR, cv::COLOR_RGB2GRAY},
      /*BGR*/ {cv::COLOR_BGR2RGB, -1, cv::COLOR_BGR2GRAY},
      /*Gray*/ {cv::COLOR_GRAY2RGB, cv::COLOR_GRAY2BGR, -1},
  };
  cv::Mat converted;
  cv::cvtColor(mat, converted, kCodes[static_cast<int>(from)][static_cast<int>(to)]);
  return converted;
}

cv::Mat apply_resize(const cv::Mat& mat, const ResizePolicy& policy) {
  if (policy.mode == ResizeMode::None) return mat;
  if (mat.rows == policy.height && mat.cols == policy.width) return mat;
  cv::Mat resized;
  cv::resize(mat, resized,
             cv::Size(static_cast<int>(policy.width), static_cast<int>(policy.height)), 0, 0,
             cv_interpolation(policy.interpolation));
  return resized;
}

// Colour conversion and resize. A conversion that only reorders or copies channels commutes
// exactly with resizing, so it runs on the smaller image; one that mixes channels (to Gray)
// rounds in between and keeps cv2's order (convert, then resize).
cv::Mat convert_and_resize(const cv::Mat& mat, ColorOrder from, const ImageSpec& spec) {
  bool mixes_channels = spec.color == ColorOrder::Gray && mat.channels() != 1;
  bool shrinks = spec.resize.mode == ResizeMode::Stretch &&
                 int64_t{mat.rows} * mat.cols > spec.resize.height * spec.resize.width;
  if (shrinks && !mixes_channels) {
    return convert_color(apply_resize(mat, spec.resize), from, spec.color);
  }
  return apply_resize(convert_color(mat, from, spec.color), spec.resize);
}

// IMREAD_REDUCED_* factor (2, 4, 8) that keeps a decoded JPEG of `size` at least as large as
// the target, or 1.
int reduction_factor(std::pair<int64_t, int64_t> size, const ImageSpec& spec) {
  if (spec.resize.mode != ResizeMode::Stretch) return 1;
  auto [width, height] = size;
  for (int factor : {8, 4, 2}) {
    if ((width + factor - 1) / factor >= spec.resize.width &&
        (height + factor - 1) / factor >= spec.resize.height) {
      return factor;
    }
  }
  return 1;
}

// The header of an upload, refused unless its format is one this build decodes and its size is
// within `max_pixels`: decoders allocate what the header says, so a small file may claim gigabytes.
ImageHeader measure(std::string_view bytes, std::string_view origin, int64_t max_pixels) {
  auto header = read_image_header(bytes);
  if (!header) {
    throw bad_input(std::string(origin) + " is not an image torchship can decode (expected " +
                    image_formats_read() + ")");
  }
  if (!header->size) {
    throw bad_input(std::string(origin) + " starts like a " + header->format +
                    " image, but its header is truncated or corrupt (no image size in it)");
  }
  auto [width, height] = *header->size;
  if (width <= 0 || height <= 0) {
    throw bad_input(std::string(origin) + " is a " + header->format + " image whose header says " +
                    std::to_string(width) + " x " + std::to_string(height) + " pixels");
  }
  if (header->buffer_pixels > max_pixels && width <= max_pixels / height) {
    throw bad_input(std::string(origin) + " is a " + header->format + " image of " +
                    std::to_string(width) + " x " + std::to_string(height) +
                    " pixels whose strips or tiles take " + std::to_string(header->buffer_pixels) +
                    " pixels, more than the limit of " + std::to_string(max_pixels) +
                    " (--max-image-pixels)");
  }
  if (width > max_pixels / height) {
    bool overflows = width > std::numeric_limits<int64_t>::max() / height;
    throw bad_input(std::string(origin) + " is a " + header->format + " image of " +
                    std::to_string(width) + " x " + std::to_string(height) + " pixels" +
                    (overflows ? "" : " (" + std::to_string(width * height) + ")") +
                    ", more than the limit of " + std::to_string(max_pixels) +
                    " (--max-image-pixels)");
  }
  return *header;
}

int imread_flags(const ImageSpec& spec, int factor) {
  bool gray = spec.color == ColorOrder::Gray;
  switch (factor) {
    case 2:
      return gray ? cv::IMREAD_REDUCED_GRAYSCALE_2 : cv::IMREAD_REDUCED_COLOR_2;
    case 4:
      return gray ? cv::IMREAD_REDUCED_GRAYSCALE_4 : cv::IMREAD_REDUCED_COLOR_4;
    case 8:
      return gray ? cv::IMREAD_REDUCED_GRAYSCALE_8 : cv::IMREAD_REDUCED_COLOR_8;
    default:
      return gray ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR;
  }
}

std::string read_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw bad_input("cannot read image " + path.string() + ": no such file");
  if (std::filesystem::is_directory(path, ec)) {
    throw bad_input("cannot read image " + path.string() + ": is a directory");
  }
  // A device or a pipe has no size to check before reading: it could yield bytes forever.
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw bad_input("cannot read image " + path.string() + ": not a regular file");
  }
  auto size = std::filesystem::file_size(path, ec);
  if (ec) throw bad_input("cannot read image " + path.string() + ": " + ec.message());
  if (size > static_cast<uintmax_t>(std::numeric_limits<int>::max())) {
    throw bad_input("cannot read image " + path.string() + ": it is " + std::to_string(size) +
                    " bytes, more than an image decoder takes (2 GiB)");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw bad_input("cannot read image " + path.string() + ": not readable");
  std::string bytes(static_cast<size_t>(size), '\0');  // one read, no per-char copy
  if (!in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()))) {
    throw bad_input("cannot read image " + path.string() + ": read failed");
  }
  return bytes;
}

// Formats whose OpenCV decoder reads only from a file: cv::imdecode writes their bytes to a
// temporary file, and leaves it behind when decoding fails (one file in /tmp per malformed
// upload). Bytes in memory of these formats are refused; a file is decoded where it lies.
bool decodes_only_from_file(const std::string& format) {
  return format == "PFM" || format == "Sun raster" || format == "Radiance HDR" ||
         format == "OpenEXR";
}

// `bytes` measured and decoded: from `file` where it is given (the bytes are its content), else
// from memory.
at::Tensor decode_measured(std::string_view bytes, const ImageSpec& spec, std::string_view origin,
                           Decode decode, int64_t max_pixels, const std::filesystem::path* file) {
  if (bytes.empty()) throw bad_input(std::string(origin) + " is empty, expected an image");
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw bad_input(std::string(origin) + " is " + std::to_string(bytes.size()) +
                    " bytes, more than an image decoder takes (2 GiB)");
  }
  ImageHeader header = measure(bytes, origin, max_pixels);
  if (!file && decodes_only_from_file(header.format)) {
    throw bad_input(std::string(origin) + " is a " + header.format +
                    " image, which OpenCV decodes only from a file: send PNG, JPEG, BMP, TIFF, "
                    "WebP or PNM (a file given to the CLI may be " +
                    header.format + ")");
  }
  bool reduce = decode == Decode::Reduced && std::string_view(header.format) == "JPEG";
  int flags = imread_flags(spec, reduce ? reduction_factor(*header.size, spec) : 1);
  cv::Mat decoded;
  try {
    if (file && decodes_only_from_file(header.format)) {
      decoded = cv::imread(file->string(), flags);
    } else {
      cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8UC1,
                     const_cast<char*>(bytes.data()));  // imdecode only reads it
      decoded = cv::imdecode(buffer, flags);
    }
  } catch (const cv::Exception&) {
    decoded.release();
  }
  if (decoded.empty()) {
    throw bad_input(std::string(origin) +
                    " is not an image OpenCV can decode (expected PNG, JPEG, BMP, TIFF, WebP, "
                    "PNM, ...)");
  }
  return tensor_sharing(convert_and_resize(decoded, ColorOrder::BGR, spec));
}

}  // namespace

at::Tensor decode_image_bytes(std::string_view bytes, const ImageSpec& spec,
                              std::string_view origin, Decode decode, int64_t max_pixels) {
  return decode_measured(bytes, spec, origin, decode, max_pixels, nullptr);
}

at::Tensor decode_image(const std::filesystem::path& path, const ImageSpec& spec, Decode decode,
                        int64_t max_pixels) {
  return decode_measured(read_file(path), spec, path.string(), decode, max_pixels, &path);
}

at::Tensor prepare_image(const at::Tensor& hwc_rgb, const ImageSpec& spec) {
  if (hwc_rgb.scalar_type() != at::kByte || hwc_rgb.dim() != 3 ||
      (hwc_rgb.size(2) != 3 && hwc_rgb.size(2) != 1)) {
    throw bad_input("expected a uint8 image tensor H x W x 3 (RGB) or H x W x 1, got " +
                    std::string(c10::toString(hwc_rgb.scalar_type())) + " " +
                    c10::str(hwc_rgb.sizes()));
  }
  bool converts = !(hwc_rgb.size(2) == 3 && spec.color == ColorOrder::RGB) &&
                  !(hwc_rgb.size(2) == 1 && spec.color == ColorOrder::Gray);
  bool resizes = spec.resize.mode == ResizeMode::Stretch &&
                 (hwc_rgb.size(0) != spec.resize.height || hwc_rgb.size(1) != spec.resize.width);
  if (!converts && !resizes) return hwc_rgb;
  at::Tensor source = hwc_rgb.to(at::kCPU).contiguous();
  cv::Mat prepared = convert_and_resize(mat_viewing(source), ColorOrder::RGB, spec);
  // The result may still view `source`'s memory when only one step ran in place: copy then.
  return prepared.data == source.data_ptr() ? tensor_sharing(prepared.clone())
                                            : tensor_sharing(prepared);
}

at::Tensor image_from_mat(const cv::Mat& bgr_or_gray, const ImageSpec& spec) {
  if (bgr_or_gray.empty() || bgr_or_gray.depth() != CV_8U ||
      (bgr_or_gray.channels() != 3 && bgr_or_gray.channels() != 1)) {
    throw bad_input("expected an 8-bit cv::Mat with 3 (BGR) or 1 channel, got depth " +
                    std::to_string(bgr_or_gray.depth()) + " with " +
                    std::to_string(bgr_or_gray.channels()) + " channels");
  }
  return tensor_sharing(convert_and_resize(bgr_or_gray, ColorOrder::BGR, spec));
}

void write_image(const std::filesystem::path& path, const at::Tensor& hwc) {
  if (hwc.scalar_type() != at::kByte || hwc.dim() != 3 || (hwc.size(2) != 3 && hwc.size(2) != 1)) {
    throw bad_input("cannot write " + path.string() +
                    ": expected a uint8 H x W x 3 or x 1 tensor, got " +
                    std::string(c10::toString(hwc.scalar_type())) + " " + c10::str(hwc.sizes()));
  }
  at::Tensor source = hwc.to(at::kCPU).contiguous();
  cv::Mat bgr = convert_color(mat_viewing(source), ColorOrder::RGB, ColorOrder::BGR);
  std::vector<uchar> encoded;
  std::string extension = path.extension().string();
  bool ok = false;
  try {
    ok = cv::imencode(extension.empty() ? ".png" : extension, bgr, encoded);
  } catch (const cv::Exception&) {
    ok = false;
  }
  if (!ok) {
    throw bad_input("cannot write " + path.string() + ": no image encoder for '" + extension +
                    "' (use .png, .jpg, .bmp, ...)");
  }
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(encoded.data()),
            static_cast<std::streamsize>(encoded.size()));
  if (!out) throw bad_input("cannot write " + path.string());
}

bool looks_like_image(const std::filesystem::path& path) {
  std::string extension = lowercase(path.extension().string());
  static const char* kExtensions[] = {".png",  ".jpg",  ".jpeg", ".jpe", ".bmp", ".dib", ".tif",
                                      ".tiff", ".webp", ".pbm",  ".pgm", ".ppm", ".pnm", ".pxm",
                                      ".jp2",  ".sr",   ".ras",  ".hdr", ".pic"};
  return std::find(std::begin(kExtensions), std::end(kExtensions), extension) !=
         std::end(kExtensions);
}

}  // namespace torchship
