#include "serving/http/content_encoding.h"

#include <zlib.h>

#include <cstdint>

#include "core/text.h"
#include "torchship/error.h"

namespace torchship::serving {

bool accepted_encoding(const std::string& encoding) {
  std::string name = lowercase(encoding);
  return name == "gzip" || name == "deflate" || name == "identity";
}

std::string inflate_body(std::string_view body, const std::string& encoding, size_t max_bytes) {
  std::string name = lowercase(encoding);
  if (name == "identity") {
    if (body.size() > max_bytes) throw BodyTooLarge("the request body exceeds the limit");
    return std::string(body);
  }
  if (body.size() > UINT32_MAX) throw BodyTooLarge("the compressed request body is too large");
  z_stream stream{};
  // 16 + 15: a gzip wrapper; 15: a zlib wrapper (HTTP's "deflate").
  if (inflateInit2(&stream, name == "gzip" ? 16 + MAX_WBITS : MAX_WBITS) != Z_OK) {
    throw internal_error("cannot start zlib's inflate");
  }
  std::string out;
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  stream.avail_in = static_cast<uInt>(body.size());
  int status = Z_OK;
  char chunk[64 * 1024];
  while (status != Z_STREAM_END) {
    stream.next_out = reinterpret_cast<Bytef*>(chunk);
    stream.avail_out = sizeof chunk;
    status = inflate(&stream, Z_NO_FLUSH);
    if (status != Z_OK && status != Z_STREAM_END) {
      inflateEnd(&stream);
      throw bad_input("the request body is not valid " + name +
                      " data (Content-Encoding: " + encoding + ")");
    }
    size_t produced = sizeof chunk - stream.avail_out;
    if (out.size() + produced > max_bytes) {
      inflateEnd(&stream);
      throw BodyTooLarge("the request body inflates to more than the limit");
    }
    out.append(chunk, produced);
    if (status == Z_OK && produced == 0 && stream.avail_in == 0) {  // input ended early
      inflateEnd(&stream);
      throw bad_input("the request body is truncated " + name +
                      " data (Content-Encoding: " + encoding + ")");
    }
  }
  inflateEnd(&stream);
  return out;
}

}  // namespace torchship::serving
