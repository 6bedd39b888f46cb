// CUDA on demand (cuda_runtime.cpp): loading libtorch_cuda, and why it did not load.
#pragma once

#include <string>

namespace torchship {

// Loads a CUDA build's libtorch_cuda (and with it the CUDA libraries) once; false where it did not
// load or this libtorch has none. cuda_available() (runtime.h) calls it before asking for devices.
bool load_cuda_library();

// Why a CUDA build's libtorch_cuda could not be loaded ("" when it was, or there is none): the
// dynamic loader's own words, for the error that refuses a CUDA device.
std::string cuda_library_problem();

}  // namespace torchship
