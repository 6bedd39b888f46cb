#include "torchship/version.h"

#include <ATen/Context.h>

#include "torch_compat.h"

namespace torchship {

const char* version() noexcept {
  return TORCHSHIP_VERSION;
}

std::string libtorch_version() {
  return compat::libtorch_version();
}

std::string version_line() {
  return std::string("torchship ") + version() + " (libtorch " + libtorch_version() +
         (libtorch_has_cuda() ? ", with CUDA" : ", CPU only") + ")";
}

}  // namespace torchship
