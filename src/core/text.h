// Small text helpers the library's messages share.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace torchship {

// "a, b, c": items with `separator` between them (nothing for an empty list).
std::string join(const std::vector<std::string>& items, std::string_view separator = ", ");

// ASCII lowercase (file extensions, HTTP header values, CPU flag names).
std::string lowercase(std::string text);

// The first line of a text that holds more than newlines and spaces, without those before it:
// one-line messages from libtorch's multi-line ones.
std::string first_line_of(std::string_view text);

}  // namespace torchship
