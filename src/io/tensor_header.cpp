#include "torchship/tensor_header.h"

#include "core/text.h"
#include "torchship/datatype.h"
#include "torchship/error.h"
#include "torchship/limits.h"

namespace torchship {
namespace {

// The datatype of a tensor header: one torch can hold.
c10::ScalarType header_type(const std::string& datatype, const std::string& where) {
  if (datatype == "BYTES") throw bad_input(where + ": BYTES tensors cannot become a torch tensor");
  try {
    return scalar_type_from_datatype(datatype);
  } catch (const Error& e) {
    throw bad_input(where + ": " + e.what());
  }
}

}  // namespace

void check_tensor_rank(size_t rank, const std::string& where) {
  if (rank > kMaxTensorRank) {
    throw bad_input(where + ": a tensor has at most " + std::to_string(kMaxTensorRank) +
                    " dimensions, \"shape\" has " + std::to_string(rank));
  }
}

int64_t TensorHeader::numel() const {
  return checked_numel(shape, "tensor");
}

TensorHeader tensor_header(const std::string& datatype, const std::vector<int64_t>& shape,
                           const std::string& where) {
  TensorHeader header{datatype, header_type(datatype, where), shape};
  check_tensor_rank(shape.size(), where);
  for (int64_t size : shape) {
    if (size < 0) {
      std::vector<std::string> sizes;
      for (int64_t s : shape) sizes.push_back(std::to_string(s));
      throw bad_input(where + ": \"shape\" must hold non-negative integers, got [" +
                      join(sizes, ",") + "]");
    }
  }
  // Every element count and byte size later taken from this shape is known not to overflow.
  checked_nbytes(header.shape, c10::elementSize(header.type), where);
  return header;
}

}  // namespace torchship
