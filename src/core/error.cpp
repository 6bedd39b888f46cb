#include "torchship/error.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>

#include "core/text.h"

namespace torchship {
namespace {

// Length of the well-formed UTF-8 sequence starting at text[at] (RFC 3629: no overlong forms,
// no surrogates, nothing above U+10FFFF), or 0 when the bytes there are not one.
size_t utf8_sequence_length(std::string_view text, size_t at) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  uint8_t lead = byte(at);
  size_t length = lead < 0x80                    ? 1
                  : lead >= 0xC2 && lead <= 0xDF ? 2
                  : lead >= 0xE0 && lead <= 0xEF ? 3
                  : lead >= 0xF0 && lead <= 0xF4 ? 4
                                                 : 0;
  if (length == 0 || at + length > text.size()) return 0;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(at + i) & 0xC0) != 0x80) return 0;
  }
  uint8_t second = length > 1 ? byte(at + 1) : 0;
  if (lead == 0xE0 && second < 0xA0) return 0;  // overlong
  if (lead == 0xED && second > 0x9F) return 0;  // surrogate
  if (lead == 0xF0 && second < 0x90) return 0;  // overlong
  if (lead == 0xF4 && second > 0x8F) return 0;  // above U+10FFFF
  return length;
}

// C1 controls (U+0080-U+009F: U+009B is CSI to some terminals), bidirectional overrides and
// isolates (U+202A-U+202E, U+2066-U+2069, which reorder what follows) and the line and
// paragraph separators (U+2028, U+2029): escaped byte by byte like the C0 controls.
bool invisible_control(std::string_view text, size_t at, size_t length) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(text[at + i]); };
  if (length == 2) return byte(0) == 0xC2 && byte(1) >= 0x80 && byte(1) <= 0x9F;
  if (length != 3 || byte(0) != 0xE2) return false;
  if (byte(1) == 0x80) return (byte(2) >= 0xA8 && byte(2) <= 0xAE);  // U+2028-U+202E
  return byte(1) == 0x81 && byte(2) >= 0xA6 && byte(2) <= 0xA9;      // U+2066-U+2069
}

}  // namespace

std::string printable(std::string_view text, size_t max_bytes) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  size_t end = std::min(text.size(), max_bytes);
  out.reserve(end);
  size_t at = 0;
  while (at < end) {
    auto byte = static_cast<uint8_t>(text[at]);
    size_t length = utf8_sequence_length(text, at);
    if (length == 0 || byte < 0x20 || byte == 0x7F) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xF];
      ++at;
      continue;
    }
    if (invisible_control(text, at, length)) {  // every byte of the sequence, escaped
      for (size_t i = 0; i < length; ++i) {
        auto part = static_cast<uint8_t>(text[at + i]);
        out += "\\x";
        out += kHex[part >> 4];
        out += kHex[part & 0xF];
      }
      at += length;
      continue;
    }
    out.append(text.substr(at, length));
    at += length;
  }
  if (at < text.size()) out += " ... (" + std::to_string(text.size() - at) + " more bytes)";
  return out;
}

const char* to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::BadInput:
      return "bad input";
    case ErrorKind::BadModel:
      return "bad model";
    case ErrorKind::Unsupported:
      return "unsupported";
    case ErrorKind::Internal:
      return "internal error";
  }
  return "internal error";
}

std::string first_line(const std::exception& error) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  return first_line_of(c10_error ? c10_error->what_without_backtrace() : error.what());
}

}  // namespace torchship
