#include "io/image_header.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <limits>
#include <map>

namespace torchship {
namespace {

using Size = std::pair<int64_t, int64_t>;

// Bounds-checked reads from the encoded bytes: every offset comes from the file.
class Bytes {
 public:
  explicit Bytes(std::string_view data) : data_(data) {}
  size_t size() const { return data_.size(); }
  bool has(size_t offset, size_t count) const {
    return offset <= data_.size() && count <= data_.size() - offset;
  }
  bool starts_with(std::string_view prefix, size_t offset = 0) const {
    return has(offset, prefix.size()) && data_.substr(offset, prefix.size()) == prefix;
  }
  uint64_t big(size_t offset, size_t count) const {  // caller checked has(offset, count)
    uint64_t value = 0;
    for (size_t i = 0; i < count; ++i) value = value << 8 | byte(offset + i);
    return value;
  }
  uint64_t little(size_t offset, size_t count) const {
    uint64_t value = 0;
    for (size_t i = count; i > 0; --i) value = value << 8 | byte(offset + i - 1);
    return value;
  }
  uint8_t byte(size_t offset) const { return static_cast<uint8_t>(data_[offset]); }
  std::string_view view() const { return data_; }

 private:
  std::string_view data_;
};

std::optional<Size> png_size(const Bytes& b) {
  if (!b.has(16, 8) || !b.starts_with("IHDR", 12)) return std::nullopt;
  return Size{b.big(16, 4), b.big(20, 4)};
}

// The first start-of-frame segment, found the way libjpeg finds markers: bytes other than 0xFF
// are skipped, as are fill bytes and stuffed zeros (FF 00), so that no segment hidden where
// libjpeg does not look can pass for the frame.
std::optional<Size> jpeg_size(const Bytes& b) {
  size_t pos = 2;
  while (b.has(pos, 4)) {
    if (b.byte(pos) != 0xFF) {  // garbage between segments: libjpeg scans on for 0xFF
      ++pos;
      continue;
    }
    uint8_t marker = b.byte(pos + 1);
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {
      pos += 2;  // a stuffed zero, or a marker without a length field
      continue;
    }
    bool start_of_frame =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (start_of_frame) {
      if (!b.has(pos + 5, 4)) return std::nullopt;
      return Size{b.big(pos + 7, 2), b.big(pos + 5, 2)};
    }
    pos += 2 + b.big(pos + 2, 2);
  }
  return std::nullopt;
}

std::optional<Size> bmp_size(const Bytes& b) {
  if (!b.has(14, 4)) return std::nullopt;
  uint64_t dib_size = b.little(14, 4);
  if (dib_size == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sides
    if (!b.has(18, 4)) return std::nullopt;
    return Size{b.little(18, 2), b.little(20, 2)};
  }
  if (!b.has(18, 8)) return std::nullopt;
  auto width = static_cast<int32_t>(b.little(18, 4));
  auto height = static_cast<int32_t>(b.little(22, 4));  // negative: stored top-down
  return Size{width, height < 0 ? -int64_t{height} : int64_t{height}};
}

std::optional<Size> webp_size(const Bytes& b) {
  if (b.starts_with("VP8 ", 12)) {
    if (!b.has(26, 4) || b.big(23, 3) != 0x9D012A) return std::nullopt;
    return Size{b.little(26, 2) & 0x3FFF, b.little(28, 2) & 0x3FFF};
  }
  if (b.starts_with("VP8L", 12)) {
    if (!b.has(21, 4) || b.byte(20) != 0x2F) return std::nullopt;
    uint64_t bits = b.little(21, 4);
    return Size{(bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1};
  }
  if (b.starts_with("VP8X", 12)) {
    if (!b.has(24, 6)) return std::nullopt;
    return Size{b.little(24, 3) + 1, b.little(27, 3) + 1};
  }
  return std::nullopt;
}

// A TIFF's byte order ("II" little-endian, "MM" big) and field sizes: classic, or BigTIFF
// (version 43) with 8-byte offsets and counts.
struct TiffLayout {
  const Bytes& b;
  bool little = false;
  bool big_tiff = false;
  size_t offset_size = 4;
  size_t count_size = 2;
  size_t entry_size = 12;
  size_t first = 4;  // where the first directory's offset is

  uint64_t read(size_t offset, size_t count) const {
    return little ? b.little(offset, count) : b.big(offset, count);
  }
};

TiffLayout tiff_layout(const Bytes& b) {
  TiffLayout layout{b, b.byte(0) == 'I'};
  layout.big_tiff = layout.read(2, 2) == 43;
  layout.offset_size = layout.big_tiff ? 8 : 4;
  layout.count_size = layout.big_tiff ? 8 : 2;
  layout.entry_size = layout.big_tiff ? 20 : 12;
  layout.first = layout.big_tiff ? 8 : 4;
  return layout;
}

// The first value of the directory entry at `entry`, from any integer type; nullopt for other
// types (and 8-byte ones outside BigTIFF), which libtiff does not read as a size.
std::optional<int64_t> tiff_entry_value(const TiffLayout& t, size_t entry) {
  size_t value_at = entry + 4 + t.offset_size;
  switch (t.read(entry + 2, 2)) {
    case 1:  // BYTE
      return t.b.byte(value_at);
    case 3:  // SHORT
      return static_cast<int64_t>(t.read(value_at, 2));
    case 8:  // SSHORT
      return static_cast<int16_t>(t.read(value_at, 2));
    case 4:   // LONG
    case 13:  // IFD
      return static_cast<int64_t>(t.read(value_at, 4));
    case 9:  // SLONG
      return static_cast<int32_t>(t.read(value_at, 4));
    case 16:  // LONG8
    case 17:  // SLONG8
    case 18:  // IFD8
      if (!t.big_tiff) return std::nullopt;
      return static_cast<int64_t>(t.read(value_at, 8) & 0x7FFFFFFFFFFFFFFF);
    default:
      return std::nullopt;
  }
}

// The first image file directory's integer tags, as libtiff reads them: the first of repeated
// tags. Nullopt when the directory lies outside the data.
std::optional<std::map<uint64_t, int64_t>> tiff_tags(const TiffLayout& t) {
  const Bytes& b = t.b;
  if (!b.has(t.first, t.offset_size)) return std::nullopt;
  uint64_t directory = t.read(t.first, t.offset_size);
  if (directory >= b.size() || !b.has(directory, t.count_size)) return std::nullopt;
  uint64_t entries = t.read(directory, t.count_size);
  std::map<uint64_t, int64_t> tags;  // the first value of each tag
  for (uint64_t i = 0; i < entries && i < 4096; ++i) {
    size_t entry = directory + t.count_size + i * t.entry_size;
    if (!b.has(entry, t.entry_size)) return std::nullopt;
    uint64_t tag = t.read(entry, 2);
    if (auto value = tiff_entry_value(t, entry)) tags.emplace(tag, *value);  // keeps the first
  }
  return tags;
}

// a x c, saturating: sides come from the file. 0 when either is not positive.
int64_t saturating_area(int64_t a, int64_t c) {
  if (a <= 0 || c <= 0) return 0;
  return a > std::numeric_limits<int64_t>::max() / c ? std::numeric_limits<int64_t>::max() : a * c;
}

// The first image file directory's ImageWidth (256) and ImageLength (257). The decoder's
// buffers follow the tiles (TileWidth 322 x TileLength 323) or strips (RowsPerStrip 278 rows)
// too: `buffer` gets the largest of those areas.
std::optional<Size> tiff_size(const Bytes& b, int64_t& buffer) {
  auto found = tiff_tags(tiff_layout(b));
  if (!found) return std::nullopt;
  std::map<uint64_t, int64_t>& tags = *found;
  if (!tags.count(256) || !tags.count(257)) return std::nullopt;
  int64_t width = tags[256], height = tags[257];
  buffer = std::max(buffer, saturating_area(width, height));
  if (tags.count(322) && tags.count(323)) {
    buffer = std::max(buffer, saturating_area(tags[322], tags[323]));
  }
  if (tags.count(278)) buffer = std::max(buffer, saturating_area(width, tags[278]));
  return Size{width, height};
}

// Decimal numbers separated by whitespace and '#' comments (PNM, PFM): the next one after pos.
std::optional<int64_t> next_number(const Bytes& b, size_t& pos) {
  while (pos < b.size()) {
    char c = static_cast<char>(b.byte(pos));
    if (c == '#') {  // a comment runs to the end of its line, \n or \r as OpenCV reads it
      while (pos < b.size() && b.byte(pos) != '\n' && b.byte(pos) != '\r') ++pos;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      ++pos;
    } else {
      break;
    }
  }
  // Every digit belongs to the number (leading zeros included), as decoders read it; a value
  // beyond any image saturates, and is refused as too large.
  constexpr int64_t kSaturated = int64_t{1} << 40;
  int64_t value = 0;
  size_t digits = 0;
  while (pos < b.size() && std::isdigit(b.byte(pos))) {
    value = std::min(kSaturated, value * 10 + (b.byte(pos) - '0'));
    ++pos;
    ++digits;
  }
  if (digits == 0) return std::nullopt;
  return value;
}

std::optional<Size> pnm_size(const Bytes& b) {
  size_t pos = 2;
  auto width = next_number(b, pos);
  auto height = width ? next_number(b, pos) : std::nullopt;
  if (!width || !height) return std::nullopt;
  return Size{*width, *height};
}

// The lines of a text header (PAM, Radiance HDR), up to `limit` bytes.
// The number after the last line that starts (after blanks) with `keyword`: OpenCV's PAM reader
// lets a later line override an earlier one.
std::optional<int64_t> keyword_number(std::string_view header, std::string_view keyword) {
  std::optional<int64_t> found;
  size_t line = 0;
  while (line < header.size()) {
    size_t end = header.find('\n', line);
    if (end == std::string_view::npos) end = header.size();
    std::string_view text = header.substr(line, end - line);
    size_t start = text.find_first_not_of(" \t\r");
    if (start != std::string_view::npos && text.substr(start, keyword.size()) == keyword &&
        start + keyword.size() < text.size() &&
        std::isspace(static_cast<unsigned char>(text[start + keyword.size()]))) {
      Bytes rest(text.substr(start + keyword.size()));
      size_t pos = 0;
      if (auto value = next_number(rest, pos)) found = value;
    }
    line = end + 1;
  }
  return found;
}

std::optional<Size> pam_size(const Bytes& b) {
  std::string_view header = b.view().substr(0, std::min<size_t>(b.size(), 4096));
  auto end = header.find("ENDHDR");
  if (end == std::string_view::npos) return std::nullopt;
  header = header.substr(0, end);
  auto width = keyword_number(header, "WIDTH");
  auto height = keyword_number(header, "HEIGHT");
  if (!width || !height) return std::nullopt;
  return Size{*width, *height};
}

// Radiance: header lines up to an empty line, then "-Y <height> +X <width>" (or another axis
// order).
std::optional<Size> hdr_size(const Bytes& b) {
  std::string_view text = b.view().substr(0, std::min<size_t>(b.size(), 8192));
  auto blank = text.find("\n\n");
  if (blank == std::string_view::npos) return std::nullopt;
  // OpenCV's reader takes exactly sscanf("-Y %d +X %d"): the first two numbers, in that form.
  std::string_view line = text.substr(blank + 2);
  line = line.substr(0, line.find('\n'));
  if (line.substr(0, 2) != "-Y") return std::nullopt;
  Bytes rest(line.substr(2));
  size_t pos = 0;
  auto height = next_number(rest, pos);
  while (pos < rest.size() && std::isspace(rest.byte(pos))) ++pos;
  if (!height || !rest.starts_with("+X", pos)) return std::nullopt;
  pos += 2;
  auto width = next_number(rest, pos);
  if (!width) return std::nullopt;
  return Size{*width, *height};
}

std::optional<Size> j2k_size(const Bytes& b, size_t start) {  // codestream: SOC, then SIZ
  if (!b.has(start, 24) || b.big(start, 4) != 0xFF4FFF51) return std::nullopt;
  int64_t width = static_cast<int64_t>(b.big(start + 8, 4)) - b.big(start + 16, 4);
  int64_t height = static_cast<int64_t>(b.big(start + 12, 4)) - b.big(start + 20, 4);
  return Size{width, height};
}

std::optional<Size> jp2_size(const Bytes& b) {  // top-level boxes, up to the codestream's
  size_t pos = 0;
  const size_t end = b.size();
  for (int boxes = 0; boxes < 1024 && b.has(pos, 8); ++boxes) {
    uint64_t length = b.big(pos, 4);
    size_t header = 8;
    if (length == 1) {
      if (!b.has(pos + 8, 8)) return std::nullopt;
      length = b.big(pos + 8, 8);
      header = 16;
    } else if (length == 0) {
      length = end - pos;
    }
    if (length < header || length > end - pos) return std::nullopt;
    // The codestream's own size (SIZ) is what OpenJPEG decodes; the image header box only
    // has to agree with it.
    if (b.starts_with("jp2c", pos + 4)) return j2k_size(b, pos + header);
    pos += length;
  }
  return std::nullopt;
}

// OpenEXR: attributes (name, type, size, value) up to an empty name; dataWindow is a box2i.
// OpenEXR keeps the last of repeated attributes: so does this.
std::optional<Size> exr_size(const Bytes& b) {
  size_t pos = 8;
  std::optional<Size> window;
  for (int attributes = 0; attributes < 4096 && pos < b.size(); ++attributes) {
    auto name_end = b.view().find('\0', pos);
    if (name_end == std::string_view::npos) return std::nullopt;
    if (name_end == pos) return window;  // the empty name that ends the header
    auto type_end = b.view().find('\0', name_end + 1);
    if (type_end == std::string_view::npos || !b.has(type_end + 1, 4)) return std::nullopt;
    std::string_view name = b.view().substr(pos, name_end - pos);
    uint64_t size = b.little(type_end + 1, 4);
    size_t value = type_end + 5;
    if (!b.has(value, size)) return std::nullopt;
    if (name == "dataWindow" && size == 16) {
      auto coordinate = [&](size_t i) {
        return int64_t{static_cast<int32_t>(b.little(value + 4 * i, 4))};
      };
      window = Size{coordinate(2) - coordinate(0) + 1, coordinate(3) - coordinate(1) + 1};
    }
    pos = value + size;
  }
  return std::nullopt;
}

}  // namespace

std::optional<ImageHeader> read_image_header(std::string_view data) {
  Bytes b(data);
  if (b.starts_with("\x89PNG\r\n\x1a\n")) return ImageHeader{"PNG", png_size(b)};
  if (b.starts_with("\xFF\xD8")) return ImageHeader{"JPEG", jpeg_size(b)};
  if (b.starts_with("BM")) return ImageHeader{"BMP", bmp_size(b)};
  if (b.starts_with("RIFF") && b.starts_with("WEBP", 8)) return ImageHeader{"WebP", webp_size(b)};
  if (b.starts_with(std::string_view("II*\0", 4)) || b.starts_with(std::string_view("MM\0*", 4)) ||
      b.starts_with(std::string_view("II+\0", 4)) || b.starts_with(std::string_view("MM\0+", 4))) {
    ImageHeader header{"TIFF", std::nullopt};
    header.size = tiff_size(b, header.buffer_pixels);
    return header;
  }
  if (b.has(0, 3) && b.byte(0) == 'P' && b.byte(1) >= '1' && b.byte(1) <= '6' &&
      std::isspace(b.byte(2))) {
    return ImageHeader{"PNM", pnm_size(b)};
  }
  if (b.starts_with("P7\n")) return ImageHeader{"PAM", pam_size(b)};
  if ((b.starts_with("PF") || b.starts_with("Pf")) && b.has(2, 1) && std::isspace(b.byte(2))) {
    return ImageHeader{"PFM", pnm_size(b)};
  }
  if (b.starts_with("\x59\xA6\x6A\x95")) {
    return ImageHeader{"Sun raster", b.has(4, 8)
                                         ? std::optional<Size>(Size{b.big(4, 4), b.big(8, 4)})
                                         : std::nullopt};
  }
  if (b.starts_with("#?RADIANCE") || b.starts_with("#?RGBE")) {
    return ImageHeader{"Radiance HDR", hdr_size(b)};
  }
  if (b.starts_with(std::string_view("\0\0\0\x0cjP  \r\n\x87\n", 12))) {
    return ImageHeader{"JPEG 2000", jp2_size(b)};
  }
  if (b.starts_with("\xFF\x4F\xFF\x51")) return ImageHeader{"JPEG 2000", j2k_size(b, 0)};
  if (b.starts_with("\x76\x2F\x31\x01")) return ImageHeader{"OpenEXR", exr_size(b)};
  return std::nullopt;
}

const char* image_formats_read() {
  return "PNG, JPEG, BMP, TIFF, WebP, PNM, PAM, PFM, Sun raster, Radiance HDR, JPEG 2000 or "
         "OpenEXR";
}

}  // namespace torchship
