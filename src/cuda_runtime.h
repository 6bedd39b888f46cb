// CUDA on demand (cuda_runtime.cpp): what cuda_available() (runtime.h) found.
#pragma once

#include <string>

namespace torchship {

// Why a CUDA build's libtorch_cuda could not be loaded ("" when it was, or there is none): the
// dynamic loader's own words, for the error that refuses a CUDA device.
std::string cuda_library_problem();

}  // namespace torchship
