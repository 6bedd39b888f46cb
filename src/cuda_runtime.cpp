// CUDA on demand. A CUDA build's libtorch.so (PyPI's wheels) needs libtorch_cuda, which maps the
// CUDA libraries when the process starts: about 400 MB of RSS and 0.2 s for every process, with a
// GPU or without. torchship links libtorch_cpu only (cmake/torchshipTorch.cmake) and loads
// libtorch_cuda from beside it the first time something asks for CUDA; its static initializers
// then register CUDA with libtorch, as at a normal start. libtorch caches what it finds the first
// time it is asked, so this must run before anything queries CUDA: every CUDA question in
// torchship goes through cuda_available().
#include <filesystem>

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#if defined(__linux__)
#include <dlfcn.h>
#endif

#include "torchship/runtime.h"
#include "torchship/version.h"

namespace torchship {
namespace {

bool load_libtorch_cuda() {
#if TORCHSHIP_LIBTORCH_CUDA && defined(__linux__)
  Dl_info info{};
  // Any function of libtorch_cpu names the folder libtorch's libraries are in.
  if (!dladdr(reinterpret_cast<void*>(&at::set_num_threads), &info) || !info.dli_fname) {
    return false;
  }
  auto library = std::filesystem::path(info.dli_fname).parent_path() / "libtorch_cuda.so";
  return dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL) != nullptr;
#else
  return false;
#endif
}

}  // namespace

bool libtorch_has_cuda() noexcept {
  return TORCHSHIP_LIBTORCH_CUDA != 0;
}

bool cuda_available() {
  static const bool loaded = load_libtorch_cuda();  // once, thread-safe
  return (loaded || !libtorch_has_cuda()) && torch::cuda::is_available();
}

}  // namespace torchship
