// Devices named by text ("cpu", "cuda", "cuda:1"), checked against this machine.
#pragma once

#include <string>

#include <c10/core/Device.h>

namespace torchship {

// The device a "cpu" / "cuda" / "cuda:N" string names. Throws Error(BadInput) for text that names
// no device and Error(Unsupported) for a CUDA device this machine or build does not have.
c10::Device parse_device(const std::string& text);

}  // namespace torchship
