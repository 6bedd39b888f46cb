// Hostile input: sizes from outside are checked before anything is allocated, image headers are
// measured before decoding, and every message is one printable line that says what came.
#include <array>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>

#include <ATen/ATen.h>
#include <opencv2/imgcodecs.hpp>

#include "fixtures.h"
#include "image_header.h"
#include "torchship/archive.h"
#include "torchship/error.h"
#include "torchship/image.h"
#include "torchship/limits.h"
#include "torchship/manifest.h"
#include "torchship/tensor_io.h"

namespace torchship {
namespace {

using nlohmann::json;
using testing::error_message;

// A .npy file whose header says `shape` and whose data is `data_bytes` zero bytes.
std::string npy_claiming(const std::string& shape, size_t data_bytes, char major = 1) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  dict.append(118 - dict.size() % 64, ' ');
  dict.push_back('\n');
  std::string out = std::string("\x93NUMPY", 6) + major + '\0';
  out.push_back(static_cast<char>(dict.size() & 0xff));
  out.push_back(static_cast<char>(dict.size() >> 8));
  if (major != 1) out.append(2, '\0');
  return out + dict + std::string(data_bytes, '\0');
}

TEST(Printable, EscapesControlAndInvalidUtf8BytesAndKeepsText) {
  EXPECT_EQ(printable(std::string("a\0b\n\x1b[31m", 9)), "a\\x00b\\x0a\\x1b[31m");
  EXPECT_EQ(printable("caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\x88"),
            "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\x88");
  EXPECT_EQ(printable("\xff\xfe\xc3(\xed\xa0\x80\xc0\xaf"),  // bad leads, a surrogate, overlong
            "\\xff\\xfe\\xc3(\\xed\\xa0\\x80\\xc0\\xaf");
  EXPECT_EQ(printable(std::string(10, 'x'), 4), "xxxx ... (6 more bytes)");
  // C1 controls (CSI), a right-to-left override and a line separator: escaped, byte by byte.
  EXPECT_EQ(printable("a\xc2\x9b"
                      "31m b\xe2\x80\xae"
                      "c\xe2\x80\xa8"),
            "a\\xc2\\x9b31m b\\xe2\\x80\\xaec\\xe2\\x80\\xa8");
  // A NUL inside a name no longer cuts the message short.
  Error error = bad_input(std::string("unknown input 'a\0b'", 19));
  EXPECT_STREQ(error.what(), "unknown input 'a\\x00b'");
}

TEST(Limits, ShapesAreCheckedForRankNegativeSizesAndOverflow) {
  EXPECT_EQ(checked_numel({2, 3, 4}, "x"), 24);
  EXPECT_EQ(checked_numel({0, 5}, "x"), 0);
  EXPECT_EQ(checked_nbytes({2, 3}, 4, "x"), 24u);
  EXPECT_EQ(error_message([] {
              checked_numel({3, -1}, "input 'a'");
            }),
            "input 'a': shape [3, -1] has a negative dimension");
  EXPECT_EQ(error_message([] {
              checked_numel({int64_t{1} << 62, 4}, "input 'a'");
            }),
            "input 'a': shape [4611686018427387904, 4] has more elements than a tensor can hold");
  // An empty dimension does not hide an overflowing product: libtorch multiplies them all.
  EXPECT_EQ(error_message([] {
              checked_numel({0, int64_t{1} << 62, 4}, "x");
            }),
            "x: shape [0, 4611686018427387904, 4] has more elements than a tensor can hold");
  EXPECT_EQ(error_message([] {
              checked_nbytes({int64_t{1} << 61, 8}, 8, "x");
            }),
            "x: shape [2305843009213693952, 8] has more elements than a tensor can hold");
  EXPECT_EQ(error_message([] {
              checked_nbytes({int64_t{1} << 60, 2}, 8, "x");
            }),
            "x: shape [1152921504606846976, 2] takes more bytes than a tensor can hold");
  std::vector<int64_t> deep(65, 1);
  EXPECT_EQ(error_message([&] { checked_numel(deep, "x"); }),
            "x: a tensor has at most 64 dimensions, the shape has 65");
}

TEST(Npy, HeadersClaimingMoreThanTheFileAreRefusedBeforeAllocating) {
  // 4 TB claimed by a 192-byte file: refused from the header, nothing allocated.
  EXPECT_EQ(error_message([] { parse_npy(npy_claiming("(100000, 100000, 100)", 64), "big.npy"); }),
            "cannot read big.npy as .npy: truncated data (the header's shape [100000, 100000, "
            "100] needs 4000000000000 bytes, the file has 64)");
  EXPECT_EQ(error_message([] { parse_npy(npy_claiming("(9223372036854775807, 3)", 0), "o.npy"); }),
            "cannot read o.npy as .npy: shape [9223372036854775807, 3] has more elements than a "
            "tensor can hold");
  EXPECT_EQ(error_message([] { parse_npy(npy_claiming("(99999999999999999999,)", 0), "r.npy"); }),
            "cannot read r.npy as .npy: malformed shape (99999999999999999999,) (expected "
            "non-negative sizes)");
  std::string v2 = npy_claiming("(1,)", 4, 2);
  v2[8] = v2[9] = v2[10] = v2[11] = '\x7f';  // a header length of 2 GB
  EXPECT_EQ(error_message([&] { parse_npy(v2, "h.npy"); }),
            "cannot read h.npy as .npy: the header says it is 2139062143 bytes long, more than "
            "the 10000 numpy.load reads");
  // The same checks hold for files, read through the stream path.
  auto path = std::filesystem::temp_directory_path() / "torchship_test_big.npy";
  {
    std::ofstream out(path, std::ios::binary);
    std::string bytes = npy_claiming("(100000, 100000, 100)", 64);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  EXPECT_EQ(error_message([&] { read_npy(path); }),
            "cannot read " + path.string() +
                " as .npy: truncated data (the header's shape [100000, 100000, 100] needs "
                "4000000000000 bytes, the file has 64)");
  std::filesystem::remove(path);
  // Header bytes that are not text come back escaped.
  std::string odd = npy_claiming("(3,)", 12);
  odd.replace(odd.find("<f4"), 3, "<f\xff");
  EXPECT_EQ(error_message([&] { parse_npy(odd, "odd.npy"); }),
            "cannot read odd.npy as .npy: unsupported dtype '<f\\xff' (expected bool, int, uint8, "
            "float or complex)");
}

TEST(TensorJson, ShapesThatDoNotFitTheDataAreRefusedBeforeAllocating) {
  auto tensor = [](const std::string& text) { tensor_from_json(json::parse(text), "input 'a'"); };
  EXPECT_EQ(
      error_message([&] { tensor(R"({"datatype":"FP32","shape":[1000000000000],"data":[1]})"); }),
      "input 'a': shape [1000000000000] needs 1000000000000 values, \"data\" has 1");
  EXPECT_EQ(error_message([&] {
              tensor(R"({"datatype":"FP32","shape":[4611686018427387904,4],"data":[1]})");
            }),
            "input 'a': shape [4611686018427387904, 4] has more elements than a tensor can hold");
  EXPECT_EQ(error_message([&] {
              tensor(R"({"datatype":"FP32","shape":[18446744073709551615],"data":[1]})");
            }),
            "input 'a': \"shape\" must hold non-negative integers, got [18446744073709551615]");
  std::string deep = std::string(100, '[') + "1" + std::string(100, ']');
  EXPECT_EQ(
      error_message([&] { tensor(R"({"datatype":"FP32","shape":[1],"data":)" + deep + "}"); }),
      "input 'a': \"data\" nests arrays deeper than 64 levels");
  json many_dims = {{"datatype", "FP32"}, {"shape", std::vector<int>(65, 1)}, {"data", {1}}};
  EXPECT_EQ(error_message([&] { tensor_from_json(many_dims, "input 'a'"); }),
            "input 'a': a tensor has at most 64 dimensions, \"shape\" has 65");
}

TEST(Manifest, SizesAreCheckedLikeEveryOtherSizeFromOutside) {
  auto parse = [](const std::string& inputs) {
    Manifest::parse(R"({"format_version": 1, "task": "generic", "inputs": )" + inputs + "}");
  };
  EXPECT_EQ(error_message([&] { parse(R"([{"name": "x", "shape": [1e300]}])"); }),
            "invalid manifest: 'inputs[0].shape' must be a list of integers, got [1e+300]");
  EXPECT_EQ(error_message([&] { parse(R"([{"name": "x", "shape": [4611686018427387904, 4]}])"); }),
            "invalid manifest: 'inputs[0].shape' must be a tensor shape (shape: shape "
            "[4611686018427387904, 4] has more elements than a tensor can hold), got "
            "[4611686018427387904,4]");
  EXPECT_EQ(error_message([&] {
              parse(R"([{"name": "x", "image": {"resize": {"mode": "stretch",
                        "size": [100000, 100000]}}}])");
            }),
            "invalid manifest: 'inputs[0].image.resize.size' must be [height, width] of at most "
            "120000000 pixels, got [100000,100000]");
}

// --- images: every format OpenCV decodes here is measured from its header -----------------

void put_big(std::string& bytes, size_t at, uint64_t value, size_t count) {
  for (size_t i = 0; i < count; ++i)
    bytes[at + i] = static_cast<char>(value >> (8 * (count - 1 - i)));
}
void put_little(std::string& bytes, size_t at, uint64_t value, size_t count) {
  for (size_t i = 0; i < count; ++i) bytes[at + i] = static_cast<char>(value >> (8 * i));
}

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
    EXPECT_EQ(decode_image_bytes(format.bytes, {}, "x", Decode::Exact, 37 * 23).size(0), 23)
        << format.name;
    EXPECT_EQ(error_message([&] { decode_image_bytes(format.bytes, {}, "x", Decode::Exact, 850); }),
              "x is a " + format.name +
                  " image of 37 x 23 pixels (851), more than the limit of 850 " +
                  "(--max-image-pixels)");
  }
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

// libtorch's reader allocates a record's size as the zip's directory states it, in its
// constructor: a 2 kB archive claiming a 4 GB "version" record is refused before that.
TEST(Archive, ForgedRecordSizesAreRefusedBeforeTheReaderAllocates) {
  std::ifstream in(testing::fixture("plain.pt"), std::ios::binary);
  std::string zip((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t entry = zip.find(std::string("PK\x01\x02", 4));
  std::string name;
  while (entry != std::string::npos) {
    size_t name_size = static_cast<uint8_t>(zip[entry + 28]) | static_cast<uint8_t>(zip[entry + 29])
                                                                   << 8;
    name = zip.substr(entry + 46, name_size);
    if (name.size() >= 8 && name.compare(name.size() - 8, 8, "/version") == 0) break;
    entry = zip.find(std::string("PK\x01\x02", 4), entry + 4);
  }
  ASSERT_NE(entry, std::string::npos);
  put_little(zip, entry + 24, 0xFFFFFFFE, 4);  // the uncompressed size
  auto path = std::filesystem::temp_directory_path() / "torchship_test_forged.pt";
  {
    std::ofstream out(path, std::ios::binary);
    out.write(zip.data(), static_cast<std::streamsize>(zip.size()));
  }
  EXPECT_EQ(error_message([&] { Archive::open(path); }),
            "cannot load " + path.string() + ": the zip's directory says record " + name +
                " is 4294967294 bytes, more than the " + std::to_string(zip.size()) +
                "-byte archive can hold (a forged or corrupt zip)");
  std::filesystem::remove(path);
}

TEST(Npy, BoolDataHoldsOnlyZerosAndOnes) {
  std::string bytes = encode_npy(at::ones({3}, at::kBool));
  bytes.back() = '\x02';
  EXPECT_EQ(error_message([&] { parse_npy(bytes, "b.npy"); }),
            "cannot read b.npy as .npy: BOOL data holds bytes 0 or 1, byte 2 is 2");
}

TEST(Json, NestingFromOutsideIsBoundedBeforeTheTreeIsBuilt) {
  std::string deep = R"({"inputs": [0], "id": )";
  deep.append(100000, '[').append(100000, ']').append("}");
  EXPECT_EQ(error_message([&] { parse_json(deep, "the request"); }),
            "the request nests arrays and objects deeper than 128 levels");
  EXPECT_TRUE(parse_json("[[1]]", "x").is_array());
  EXPECT_TRUE(parse_json("[[1]", "x").is_discarded());
}

}  // namespace
}  // namespace torchship
