// Libraries that compiled code lists as needed, stood in for by empty ones embedded in
// torchship (extensions.cpp).
#pragma once

namespace torchship {

// A CUDA build's libtorch.so only pulls in libtorch_cpu and libtorch_cuda; torchship links
// libtorch_cpu alone (cuda_runtime.cpp). Compiled packages and extension libraries list
// libtorch.so as needed, and the dynamic loader would otherwise find none, or another torch's
// (Debian's): an empty library with that soname satisfies it, since their symbols come from
// libtorch_cpu (and, for CUDA code, libtorch_cuda: load_cuda_library(), cuda_runtime.h). Nothing
// where libtorch.so is linked already.
void satisfy_libtorch_dependency();

}  // namespace torchship
