// libtorch's warnings (TORCH_WARN: deprecations, performance notes), for front ends that keep
// their stderr tidy.
#pragma once

#include <functional>
#include <string>

namespace torchship {

// Hands every distinct libtorch warning to `sink` once (its first line), instead of libtorch's
// "[W... file:line] Warning: ..." lines on stderr. Process-wide; call once, early.
void route_libtorch_warnings(std::function<void(const std::string&)> sink);

}  // namespace torchship
