// Compressed request bodies (Content-Encoding: gzip or deflate, as tritonclient sends them with
// request_compression_algorithm): inflated here with a limit on the output. httplib would
// inflate them itself, with no limit: a 1 MB gzip body of zeros became 1 GB in memory.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "serving/status.h"

namespace torchship::serving {

// Whether torchship inflates this Content-Encoding ("gzip", "deflate", "identity"; any case).
bool accepted_encoding(const std::string& encoding);

// The body inflated, at most `max_bytes` of it. Throws Error(BadInput) for a corrupt stream and
// BodyTooLarge past the limit (checked as it inflates: nothing beyond is ever allocated).
std::string inflate_body(std::string_view body, const std::string& encoding, size_t max_bytes);

}  // namespace torchship::serving
