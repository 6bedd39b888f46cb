#include "torchship/version.h"

#include <ATen/Context.h>

#include "core/torch_compat.h"

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

bool libtorch_has_cuda() noexcept {
  return TORCHSHIP_LIBTORCH_CUDA != 0;
}

std::vector<std::string> compiled_backends() {
  std::vector<std::string> out = {"TorchScript"};
#ifdef TORCHSHIP_HAVE_AOTI
  out.push_back("AOTInductor");
#endif
#ifdef TORCHSHIP_HAVE_OPENVINO
  out.push_back("OpenVINO");
#endif
  if (libtorch_has_cuda()) out.push_back("CUDA");
  return out;
}

}  // namespace torchship
