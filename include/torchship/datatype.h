// How tensors are named to people and protocols: KServe v2 datatype names and shapes as text.
#pragma once

#include <string>
#include <string_view>

#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>

namespace torchship {

// KServe v2 datatype names ("FP32", "UINT8", ...) for libtorch scalar types, and back.
// Throws Error(Unsupported) for a dtype KServe v2 has no name for.
std::string datatype_name(c10::ScalarType type);
// Throws Error(BadInput) for a name that is not a KServe v2 tensor datatype torch can hold.
c10::ScalarType scalar_type_from_datatype(std::string_view name);

// "[1, 3, 224, 224]" (-1 stays -1): shapes in messages and summaries.
std::string shape_text(c10::IntArrayRef shape);

}  // namespace torchship
