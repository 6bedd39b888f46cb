#include "torchship/version.h"

#include <ATen/Context.h>

#include "backends/backend.h"
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

std::vector<std::string> compiled_backends() {
  std::vector<std::string> out = {"TorchScript"};
  if (backends::aoti_compiled()) out.push_back("AOTInductor");
  if (libtorch_has_cuda()) out.push_back("CUDA");
  return out;
}

}  // namespace torchship
