// Tensors in and out of NumPy's .npy files (format 1.0-3.0, C order, every numeric dtype and
// bool). Fortran order is rejected.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include <ATen/core/Tensor.h>

namespace torchship {

at::Tensor read_npy(const std::filesystem::path& path);
// `origin` names the bytes in error messages (a file, an archive entry, an upload).
at::Tensor parse_npy(std::string_view bytes, std::string_view origin);
void write_npy(const std::filesystem::path& path, const at::Tensor& tensor);
std::string encode_npy(const at::Tensor& tensor);

}  // namespace torchship
