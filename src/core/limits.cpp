#include "torchship/limits.h"

#include <limits>

#include "torchship/datatype.h"
#include "torchship/error.h"

namespace torchship {

int64_t checked_numel(c10::IntArrayRef shape, const std::string& where) {
  if (shape.size() > kMaxTensorRank) {
    throw bad_input(where + ": a tensor has at most " + std::to_string(kMaxTensorRank) +
                    " dimensions, the shape has " + std::to_string(shape.size()));
  }
  // libtorch multiplies all dimensions, an empty one included: so does this check.
  int64_t count = 1;
  bool empty = false;
  for (int64_t dim : shape) {
    if (dim < 0) {
      throw bad_input(where + ": shape " + shape_text(shape) + " has a negative dimension");
    }
    if (dim == 0) {
      empty = true;
      continue;
    }
    if (count > std::numeric_limits<int64_t>::max() / dim) {
      throw bad_input(where + ": shape " + shape_text(shape) +
                      " has more elements than a tensor can hold");
    }
    count *= dim;
  }
  return empty ? 0 : count;
}

void check_bool_bytes(std::string_view bytes, const std::string& where) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto byte = static_cast<uint8_t>(bytes[i]);
    if (byte > 1) {
      throw bad_input(where + ": BOOL data holds bytes 0 or 1, byte " + std::to_string(i) + " is " +
                      std::to_string(byte));
    }
  }
}

size_t checked_nbytes(c10::IntArrayRef shape, size_t element_size, const std::string& where) {
  auto count = static_cast<uint64_t>(checked_numel(shape, where));
  if (element_size > 0 && count > std::numeric_limits<int64_t>::max() / element_size) {
    throw bad_input(where + ": shape " + shape_text(shape) +
                    " takes more bytes than a tensor can hold");
  }
  return static_cast<size_t>(count * element_size);
}

}  // namespace torchship
