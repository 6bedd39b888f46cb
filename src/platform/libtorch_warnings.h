// libtorch's warnings (TORCH_WARN: deprecations, performance notes), for front ends that keep
// their stderr tidy.
#pragma once

#include <functional>
#include <string>

namespace torchship {

// Hands every distinct libtorch warning raised on the calling thread to `sink` once (its first
// line), instead of libtorch's "[W... file:line] Warning: ..." lines on stderr. libtorch keeps
// one handler per thread: threads started elsewhere (a server's workers) keep its own. Call
// once, early, from the thread that runs the models (the CLI's main thread).
void route_libtorch_warnings(std::function<void(const std::string&)> sink);

}  // namespace torchship
