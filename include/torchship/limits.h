// Sizes that come from outside torchship (file headers, requests, manifests, image headers) are
// checked with these before anything is allocated: overflow-safe, and with a message that says
// what was expected and what came.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <c10/util/ArrayRef.h>

namespace torchship {

// NumPy's own limit (NPY_MAXDIMS); libtorch has none.
constexpr size_t kMaxTensorRank = 64;

// Pixels (width x height) an image may decode to, by default: enough for the largest camera
// photos (a 61 MP full-frame sensor, a 108 MP phone's full-resolution mode), while one decode
// stays near 360 MB (3 bytes a pixel). Checked from the image's header, before decoding.
constexpr int64_t kDefaultMaxImagePixels = 120'000'000;

// The element count of a tensor of `shape`. Throws Error(BadInput) "<where>: ..." when a
// dimension is negative, the rank exceeds kMaxTensorRank, or the count overflows int64.
int64_t checked_numel(c10::IntArrayRef shape, const std::string& where);

// The bytes such a tensor takes with elements of `element_size` bytes, checked the same way.
size_t checked_nbytes(c10::IntArrayRef shape, size_t element_size, const std::string& where);

// Raw bytes that are to become a BOOL tensor must each be 0 or 1: any other byte is not a
// valid bool, and reading it is undefined behaviour. Throws Error(BadInput) naming the first.
void check_bool_bytes(std::string_view bytes, const std::string& where);

}  // namespace torchship
