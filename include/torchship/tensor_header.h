// A tensor's datatype and shape as a request or file declares them, checked before anything is
// allocated for its values: the one check every encoding (JSON, .npy, gRPC, raw bytes) shares.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>

namespace torchship {

// The validated "datatype" and "shape" of a tensor, whatever holds its values ("data", a .npy
// file, binary bytes after a KServe request's JSON, a gRPC message).
struct TensorHeader {
  std::string datatype;
  c10::ScalarType type;
  std::vector<int64_t> shape;
  int64_t numel() const;
};

// Throws Error(BadInput) "<where>: ..." for a datatype torch cannot hold, a negative size, more
// than kMaxTensorRank dimensions, or a byte size that overflows.
TensorHeader tensor_header(const std::string& datatype, const std::vector<int64_t>& shape,
                           const std::string& where);

// Throws Error(BadInput) "<where>: a tensor has at most 64 dimensions, ..." for a rank above
// kMaxTensorRank: checked before a shape of that many sizes is read.
void check_tensor_rank(size_t rank, const std::string& where);

}  // namespace torchship
