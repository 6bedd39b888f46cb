#include "core/text.h"

#include <cctype>

namespace torchship {

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += separator;
    out += items[i];
  }
  return out;
}

std::string lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string first_line_of(std::string_view text) {
  auto start = text.find_first_not_of("\n ");
  if (start == std::string_view::npos) return "";
  return std::string(text.substr(start, text.find('\n', start) - start));
}

}  // namespace torchship
