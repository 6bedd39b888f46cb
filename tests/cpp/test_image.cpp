// Images: decoding, preprocessing per the manifest, headers measured before decoding.

#include <array>
#include <fstream>
#include <functional>
#include <iterator>

#include <ATen/ATen.h>
#include <opencv2/imgcodecs.hpp>

#include "fixtures.h"
#include "image_batches.h"
#include "io/image_header.h"
#include "torchship/image.h"
#include "torchship/manifest.h"
#include "torchship/npy.h"
#include "torchship/tensor_json.h"
#include "torchship/torchship.h"

namespace torchship {
namespace {

using testing::classifier;
using testing::error_message;
using testing::fixture;
using testing::put_big;
using testing::put_little;
using testing::scratch;

TEST(Image, DecodesIntoManifestColourAndSizeSharingOpenCVsBuffer) {
  auto path = fixture("chelsea.png");
  at::Tensor rgb = decode_image(path);
  EXPECT_EQ(rgb.sizes(), (std::vector<int64_t>{300, 451, 3}));
  EXPECT_EQ(rgb.scalar_type(), at::kByte);
  at::Tensor bgr = decode_image(path, ImageSpec{ColorOrder::BGR, {}});
  EXPECT_TRUE(at::equal(rgb.flip({2}), bgr));
  ImageSpec small{ColorOrder::Gray, {ResizeMode::Stretch, 28, 28, Interpolation::Area}};
  EXPECT_EQ(decode_image(path, small).sizes(), (std::vector<int64_t>{28, 28, 1}));
  // Resizing an already decoded tensor gives what decoding with the policy gives.
  ImageSpec resized{ColorOrder::RGB, {ResizeMode::Stretch, 224, 224, Interpolation::Linear}};
  EXPECT_TRUE(at::equal(prepare_image(rgb, resized), decode_image(path, resized)));
}

TEST(Image, DecodesBytesAndRejectsWhatIsNotAnImage) {
  std::ifstream in(fixture("random_0.png"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(decode_image_bytes(bytes).sizes(), (std::vector<int64_t>{97, 131, 3}));
  auto text = fixture("not_an_image.png");
  EXPECT_EQ(error_message([&] { decode_image(text); }),
            text.string() +
                " is not an image torchship can decode (expected PNG, JPEG, BMP, TIFF, "
                "WebP, PNM, PAM, PFM, Sun raster, Radiance HDR, JPEG 2000 or OpenEXR)");
  EXPECT_EQ(error_message([] { decode_image_bytes(std::string_view()); }),
            "image bytes is empty, expected an image");
}

TEST(Image, ExactDecodeOfAPhotoIsPythonsCv2PathAndReducedStaysClose) {
  auto photo = fixture("photo_1920x1080.jpg");
  at::Tensor python = read_npy(fixture("photo_1920x1080_224.npy"));
  ImageSpec spec{ColorOrder::RGB, {ResizeMode::Stretch, 224, 224, Interpolation::Linear}};
  EXPECT_TRUE(at::equal(decode_image(photo, spec), python));
  // 1920x1080 -> 480x270 in the decoder (factor 4 keeps both sides >= 224), then 224x224.
  at::Tensor reduced = decode_image(photo, spec, Decode::Reduced);
  ASSERT_EQ(reduced.sizes(), python.sizes());
  EXPECT_FALSE(at::equal(reduced, python));
  double mean_error = (reduced.to(at::kFloat) - python.to(at::kFloat)).abs().mean().item<double>();
  EXPECT_LT(mean_error, 4.0) << "mean absolute difference in 0..255 levels";
  // PNGs, and JPEGs not larger than twice the target, decode exactly either way.
  auto png = fixture("chelsea.png");
  EXPECT_TRUE(at::equal(decode_image(png, spec, Decode::Reduced), decode_image(png, spec)));
  ImageSpec large{ColorOrder::RGB, {ResizeMode::Stretch, 600, 1000, Interpolation::Linear}};
  EXPECT_TRUE(at::equal(decode_image(photo, large, Decode::Reduced), decode_image(photo, large)));
}

TEST(Image, BatchesDecodeAheadInOrderAndReportUndecodableFiles) {
  const Model& model = classifier();
  std::vector<std::filesystem::path> paths = {fixture("chelsea.png"), fixture("not_an_image.png"),
                                              fixture("random_0.png"), fixture("random_1.png"),
                                              fixture("photo_1920x1080.jpg")};
  for (bool prefetch : {true, false}) {
    ImageBatches batches(model, paths, 2, Decode::Exact, prefetch);
    std::vector<std::filesystem::path> seen;
    std::vector<std::string> failures;
    size_t count = 0;
    while (auto batch = batches.next()) {
      ++count;
      ASSERT_EQ(batch->paths.size(), batch->inputs.size());
      for (size_t i = 0; i < batch->paths.size(); ++i) {
        seen.push_back(batch->paths[i]);
        EXPECT_TRUE(
            batch->inputs[i].toTensor().equal(model.image_input(batch->paths[i]).toTensor()));
      }
      for (const auto& failure : batch->failures) failures.push_back(failure.message);
    }
    EXPECT_EQ(count, 3u);
    EXPECT_EQ(seen, (std::vector<std::filesystem::path>{paths[0], paths[2], paths[3], paths[4]}));
    ASSERT_EQ(failures.size(), 1u);
    EXPECT_EQ(failures[0], paths[1].string() +
                               " is not an image torchship can decode (expected PNG, JPEG, "
                               "BMP, TIFF, WebP, PNM, PAM, PFM, Sun raster, Radiance HDR, JPEG "
                               "2000 or OpenEXR)");
  }
}

TEST(Image, WritesWhatItReads) {
  auto path = scratch("overlay.png");
  at::Tensor image = decode_image(fixture("random_1.png"));
  write_image(path, image);
  EXPECT_TRUE(at::equal(decode_image(path), image));
  std::filesystem::remove(path);
}

// --- images: every format OpenCV decodes here is measured from its header -----------------

std::string encoded(const std::string& extension, int width, int height) {
  cv::Mat image(
      height, width,
      extension == ".pfm" || extension == ".hdr" || extension == ".exr" ? CV_32FC3 : CV_8UC3,
      cv::Scalar(40, 90, 200));
  std::vector<uchar> buffer;
  if (!cv::imencode(extension, image, buffer)) return "";
  return std::string(buffer.begin(), buffer.end());
}

// The bytes of a `width` x `height` image in each format; `sized(w, h)` rewrites the header to
// claim other sides, as a decompression bomb does.
struct Format {
  std::string name;
  std::string bytes;
  std::function<std::string(int64_t, int64_t)> claiming;
};

std::vector<Format> formats(int width, int height) {
  std::vector<Format> out;
  std::string png = encoded(".png", width, height);
  out.push_back({"PNG", png, [png](int64_t w, int64_t h) {
                   std::string b = png;
                   put_big(b, 16, w, 4);
                   put_big(b, 20, h, 4);
                   return b;
                 }});
  std::string jpeg = encoded(".jpg", width, height);
  out.push_back({"JPEG", jpeg, [jpeg](int64_t w, int64_t h) {
                   std::string b = jpeg;
                   size_t sof = b.find("\xff\xc0");
                   put_big(b, sof + 5, h, 2);
                   put_big(b, sof + 7, w, 2);
                   return b;
                 }});
  std::string bmp = encoded(".bmp", width, height);
  out.push_back({"BMP", bmp, [bmp](int64_t w, int64_t h) {
                   std::string b = bmp;
                   put_little(b, 18, w, 4);
                   put_little(b, 22, h, 4);
                   return b;
                 }});
  std::string tiff = encoded(".tiff", width, height);
  out.push_back({"TIFF", tiff, [tiff](int64_t w, int64_t h) {
                   std::string b = tiff;  // little-endian; rewrite the first IFD's two tags
                   size_t ifd = (b[4] & 0xff) | (b[5] & 0xff) << 8 | (b[6] & 0xff) << 16;
                   size_t entries = b[ifd] & 0xff;
                   for (size_t i = 0; i < entries; ++i) {
                     size_t entry = ifd + 2 + 12 * i;
                     int tag = (b[entry] & 0xff) | (b[entry + 1] & 0xff) << 8;
                     if (tag != 256 && tag != 257) continue;
                     put_little(b, entry + 2, 4, 2);  // as LONG
                     put_little(b, entry + 8, tag == 256 ? w : h, 4);
                   }
                   return b;
                 }});
  std::string webp = encoded(".webp", width, height);
  out.push_back({"WebP", webp, [webp](int64_t w, int64_t h) {
                   std::string b = webp;  // VP8L (lossless at OpenCV's default quality)
                   uint32_t bits = static_cast<uint32_t>(w - 1) | static_cast<uint32_t>(h - 1)
                                                                      << 14;
                   put_little(b, 21, bits, 4);
                   return b;
                 }});
  auto text_header = [](std::string bytes, const std::string& old_sides, const std::string& sides) {
    bytes.replace(bytes.find(old_sides), old_sides.size(), sides);
    return bytes;
  };
  std::string sides = std::to_string(width) + " " + std::to_string(height);
  std::string ppm = encoded(".ppm", width, height);
  out.push_back({"PNM", ppm, [=](int64_t w, int64_t h) {
                   return text_header(ppm, sides, std::to_string(w) + " " + std::to_string(h));
                 }});
  std::string pam = encoded(".pam", width, height);
  out.push_back(
      {"PAM", pam, [=](int64_t w, int64_t h) {
         std::string b =
             text_header(pam, "WIDTH " + std::to_string(width), "WIDTH " + std::to_string(w));
         return text_header(b, "HEIGHT " + std::to_string(height), "HEIGHT " + std::to_string(h));
       }});
  std::string pfm = encoded(".pfm", width, height);
  out.push_back({"PFM", pfm, [=](int64_t w, int64_t h) {
                   return text_header(pfm, sides, std::to_string(w) + " " + std::to_string(h));
                 }});
  std::string sun = encoded(".ras", width, height);
  out.push_back({"Sun raster", sun, [sun](int64_t w, int64_t h) {
                   std::string b = sun;
                   put_big(b, 4, w, 4);
                   put_big(b, 8, h, 4);
                   return b;
                 }});
  std::string hdr = encoded(".hdr", width, height);
  std::string hdr_sides = "-Y " + std::to_string(height) + " +X " + std::to_string(width);
  out.push_back({"Radiance HDR", hdr, [=](int64_t w, int64_t h) {
                   return text_header(hdr, hdr_sides,
                                      "-Y " + std::to_string(h) + " +X " + std::to_string(w));
                 }});
  std::string exr = encoded(".exr", width, height);
  if (!exr.empty()) {
    out.push_back({"OpenEXR", exr, [exr](int64_t w, int64_t h) {
                     std::string b = exr;
                     size_t window = b.find(std::string("dataWindow\0box2i\0", 17)) + 17 + 4;
                     put_little(b, window, 0, 4);
                     put_little(b, window + 4, 0, 4);
                     put_little(b, window + 8, w - 1, 4);
                     put_little(b, window + 12, h - 1, 4);
                     return b;
                   }});
  }
  return out;
}

TEST(ImageHeader, EveryFormatIsMeasuredFromItsHeader) {
  for (const auto& format : formats(37, 23)) {
    ASSERT_FALSE(format.bytes.empty()) << format.name;
    auto header = read_image_header(format.bytes);
    ASSERT_TRUE(header) << format.name;
    EXPECT_EQ(header->format, format.name);
    ASSERT_TRUE(header->size) << format.name;
    EXPECT_EQ(*header->size, (std::pair<int64_t, int64_t>{37, 23})) << format.name;
    // The limit is inclusive: exactly 37 x 23 pixels decode, one fewer allowed does not.
    auto path = scratch("format");
    std::ofstream(path, std::ios::binary) << format.bytes;
    EXPECT_EQ(decode_image(path, {}, Decode::Exact, 37 * 23).size(0), 23) << format.name;
    EXPECT_EQ(error_message([&] { decode_image(path, {}, Decode::Exact, 850); }),
              path.string() + " is a " + format.name +
                  " image of 37 x 23 pixels (851), more than the limit of 850 " +
                  "(--max-image-pixels)");
    std::filesystem::remove(path);
    if (format.name == "PFM" || format.name == "Sun raster" || format.name == "Radiance HDR" ||
        format.name == "OpenEXR") {
      EXPECT_EQ(error_message([&] { decode_image_bytes(format.bytes, {}, "x"); }),
                "x is a " + format.name +
                    " image, which OpenCV decodes only from a file: send PNG, JPEG, BMP, TIFF, "
                    "WebP or PNM (a file given to the CLI may be " +
                    format.name + ")");
    } else {
      EXPECT_EQ(decode_image_bytes(format.bytes, {}, "x", Decode::Exact, 37 * 23).size(0), 23)
          << format.name;
    }
  }
}

// OpenCV decodes some formats' bytes through a temporary file that a failed decode leaves
// behind: a malformed upload of one must leave nothing in the temporary folder.
TEST(ImageHeader, MalformedUploadsLeaveNoTemporaryFiles) {
  auto count = [] {
    size_t found = 0;
    for (const auto& entry :
         std::filesystem::directory_iterator(std::filesystem::temp_directory_path())) {
      found += entry.path().filename().string().rfind("__opencv_temp", 0) == 0;
    }
    return found;
  };
  size_t before = count();
  for (const auto& format : formats(16, 16)) {
    std::string malformed = format.bytes.substr(0, format.bytes.size() / 2);
    try {
      decode_image_bytes(malformed, {}, "upload");
    } catch (const Error&) {
    }
  }
  EXPECT_EQ(error_message([] { decode_image_bytes(std::string("PF\n7\r\r1\r\r"), {}, "x"); }),
            "x is a PFM image, which OpenCV decodes only from a file: send PNG, JPEG, BMP, TIFF, "
            "WebP or PNM (a file given to the CLI may be PFM)");
  EXPECT_EQ(count(), before);
}

TEST(ImageHeader, DecompressionBombsAreRefusedBeforeDecoding) {
  // 16000 x 16000 (768 MB as RGB) fits every format's size fields (WebP's are 14 bits).
  for (const auto& format : formats(16, 16)) {
    std::string bomb = format.claiming(16000, 16000);
    auto header = read_image_header(bomb);
    ASSERT_TRUE(header && header->size) << format.name;
    EXPECT_EQ(*header->size, (std::pair<int64_t, int64_t>{16000, 16000})) << format.name;
    EXPECT_EQ(error_message([&] { decode_image_bytes(bomb, {}, "upload"); }),
              "upload is a " + format.name +
                  " image of 16000 x 16000 pixels (256000000), more than the limit of 120000000 "
                  "(--max-image-pixels)");
  }
  EXPECT_EQ(error_message([] { decode_image_bytes("\x89PNG\r\n\x1a\n", {}, "upload"); }),
            "upload starts like a PNG image, but its header is truncated or corrupt (no image size "
            "in it)");
  std::string zero = formats(16, 16)[0].claiming(0, 16);
  EXPECT_EQ(error_message([&] { decode_image_bytes(zero, {}, "upload"); }),
            "upload is a PNG image whose header says 0 x 16 pixels");
  // JPEG 2000, from headers alone (OpenCV writes none here): the codestream's SIZ marker in
  // 'jp2c' is what is decoded, whatever the image header box in 'jp2h' says (1 x 1 here).
  std::string jp2(
      "\0\0\0\x0cjP  \r\n\x87\n\0\0\0\x14"
      "ftypjp2 \0\0\0\0jp2 \0\0\0\x1e"
      "jp2h"
      "\0\0\0\x16"
      "ihdr\0\0\0\x01\0\0\0\x01\0\x03\x07\x07\0\0"
      "\0\0\0\x20"
      "jp2c\xff\x4f\xff\x51\0\x29\0\0\0\0\x75\x30\0\0\x75\x30\0\0\0\0\0\0\0\0",
      12 + 20 + 8 + 22 + 32);
  EXPECT_EQ(error_message([&] { decode_image_bytes(jp2, {}, "upload"); }),
            "upload is a JPEG 2000 image of 30000 x 30000 pixels (900000000), more than the "
            "limit of 120000000 (--max-image-pixels)");
}

// A little-endian TIFF whose first directory holds `entries` (tag, type, value), in that order.
std::string tiff_with(const std::vector<std::array<uint32_t, 3>>& entries) {
  std::string b = std::string("II*\0", 4) + std::string("\x08\0\0\0", 4);
  b += static_cast<char>(entries.size());
  b += '\0';
  for (const auto& [tag, type, value] : entries) {
    std::string entry(12, '\0');
    put_little(entry, 0, tag, 2);
    put_little(entry, 2, type, 2);
    put_little(entry, 4, 1, 4);
    put_little(entry, 8, value, type == 3 ? 2 : 4);
    b += entry;
  }
  return b + std::string(4, '\0');
}

// Headers that a decoder reads differently from a naive parser: each is measured as the
// decoder will decode it, and refused (these once passed as 1 x 1 or 1 x 30000).
TEST(ImageHeader, AmbiguousHeadersAreMeasuredAsTheDecoderReadsThem) {
  auto refused = [](const std::string& bytes) {
    return error_message([&] { decode_image_bytes(bytes, {}, "upload"); });
  };
  // libtiff keeps the first of repeated tags.
  EXPECT_EQ(refused(tiff_with({{256, 4, 32768}, {257, 4, 32768}, {256, 3, 1}, {257, 3, 1}})),
            "upload is a TIFF image of 32768 x 32768 pixels (1073741824), more than the limit "
            "of 120000000 (--max-image-pixels)");
  // A 1 x 1 image with 32768 x 32752 tiles: the decoder allocates whole tiles.
  EXPECT_EQ(refused(tiff_with({{256, 3, 1}, {257, 3, 1}, {322, 4, 32768}, {323, 4, 32752}})),
            "upload is a TIFF image of 1 x 1 pixels whose strips or tiles take 1073217536 "
            "pixels, more than the limit of 120000000 (--max-image-pixels)");
  // Every digit counts, leading zeros included; a comment may end at \r.
  EXPECT_EQ(refused("P5 00000000000130000 8000 255\n"),
            "upload is a PNM image of 130000 x 8000 pixels (1040000000), more than the limit of "
            "120000000 (--max-image-pixels)");
  EXPECT_EQ(refused("P6\n#\r30000 30000\n1 1\n255\n"),
            "upload is a PNM image of 30000 x 30000 pixels (900000000), more than the limit of "
            "120000000 (--max-image-pixels)");
  // Radiance: the first "-Y H +X W" is the size, whatever follows on the line.
  EXPECT_EQ(refused("#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 13000 +X 30000 -Y 1 +X 1\n"),
            "upload is a Radiance HDR image of 30000 x 13000 pixels (390000000), more than the "
            "limit of 120000000 (--max-image-pixels)");
  // JPEG: a stuffed zero (FF 00) is no segment; the frame hidden behind it is not the frame.
  std::string jpeg(
      "\xff\xd8\xff\x00\x00\x0c\xff\xe1\x00\x0d"
      "\xff\xc0\x00\x0b\x08\x00\x01\x00\x01\x01\x00"
      "\xff\xc0\x00\x0b\x08\x75\x30\x75\x30\x01\x00",
      10 + 11 + 11);
  EXPECT_EQ(refused(jpeg),
            "upload is a JPEG image of 30000 x 30000 pixels (900000000), more than the limit of "
            "120000000 (--max-image-pixels)");
}

}  // namespace
}  // namespace torchship
