// JSON that comes from outside (a request, a file, an archive's index, a command-line spec),
// parsed with its nesting bounded before the tree is built.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace torchship {

// JSON nesting accepted from outside. nlohmann parses iteratively, but copies, compares and
// prints recursively: 100,000 brackets in a 200 kB request would exhaust a thread's stack.
constexpr int kMaxJsonDepth = 128;

// JSON from outside (a request, a file, an archive's index). Invalid JSON gives a discarded
// value (is_discarded()); a document nested deeper than kMaxJsonDepth throws Error(BadInput)
// "<what> nests arrays and objects deeper than 128 levels", before it is built.
nlohmann::json parse_json(std::string_view text, const std::string& what);

}  // namespace torchship
