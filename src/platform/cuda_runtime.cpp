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

#include "platform/cuda_runtime.h"
#include "torchship/runtime.h"
#include "torchship/version.h"

namespace torchship {
namespace {

std::string load_error;  // why libtorch_cuda did not load; written once, before any reader

bool load_libtorch_cuda() {
#if TORCHSHIP_LIBTORCH_CUDA && defined(__linux__)
  Dl_info info{};
  // Any function of libtorch_cpu names the folder libtorch's libraries are in.
  if (!dladdr(reinterpret_cast<void*>(&at::set_num_threads), &info) || !info.dli_fname) {
    load_error = "libtorch's folder is unknown";
    return false;
  }
  auto library = std::filesystem::path(info.dli_fname).parent_path() / "libtorch_cuda.so";
  if (dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL)) return true;
  const char* why = dlerror();
  load_error = why ? why : "dlopen failed on " + library.string();
  return false;
#else
  return false;
#endif
}

}  // namespace

bool load_cuda_library() {
  static const bool loaded = load_libtorch_cuda();  // once, thread-safe
  return loaded;
}

std::string cuda_library_problem() {
  load_cuda_library();
  return load_error;
}

bool cuda_available() {
  return (load_cuda_library() || !libtorch_has_cuda()) && torch::cuda::is_available();
}

}  // namespace torchship
