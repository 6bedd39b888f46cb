#pragma once

#include <string>
#include <vector>

namespace torchship {
// The torchship release this library was built from ("0.1.0").
const char* version() noexcept;
// The libtorch release it was compiled against and runs on ("1.13.0", "2.14.1").
std::string libtorch_version();
// "torchship 0.1.0 (libtorch 2.14.1, with CUDA)": what `torchship --version` prints.
std::string version_line();
// The model formats and devices this build runs: "TorchScript", "AOTInductor" (libtorch >= 2.6
// with its package loader), "CUDA" (a CUDA build of libtorch).
std::vector<std::string> compiled_backends();
// Whether that libtorch is a CUDA build (PyPI's wheels are; Debian's is not). Its CUDA part is
// loaded when a model first asks for a CUDA device (cuda_available(), runtime.h).
bool libtorch_has_cuda() noexcept;
}  // namespace torchship
