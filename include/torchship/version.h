#pragma once

#include <string>

namespace torchship {
// The torchship release this library was built from ("0.1.0").
const char* version() noexcept;
// The libtorch release it was compiled against and runs on ("1.13.0", "2.14.1").
std::string libtorch_version();
// "torchship 0.1.0 (libtorch 2.14.1, with CUDA)": what `torchship --version` prints.
std::string version_line();
}  // namespace torchship
