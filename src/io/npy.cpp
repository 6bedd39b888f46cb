// NumPy .npy files (format versions 1.0 to 3.0), the exchange format for tensors on disk.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <ATen/ATen.h>

#include "torchship/npy.h"

#include "torchship/datatype.h"
#include "torchship/error.h"
#include "torchship/limits.h"

namespace torchship {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
// numpy.load refuses longer headers unless told otherwise (its max_header_size).
constexpr size_t kMaxHeaderSize = 10000;

struct NpyHeader {
  c10::ScalarType type = c10::kFloat;
  bool swap_bytes = false;
  std::vector<int64_t> shape;
  size_t data_offset = 0;
  size_t data_bytes = 0;  // what the shape and dtype take, checked against overflow
};

bool host_is_little_endian() {
  const uint16_t probe = 1;
  return *reinterpret_cast<const uint8_t*>(&probe) == 1;
}

[[noreturn]] void reject(std::string_view origin, const std::string& why) {
  throw bad_input("cannot read " + std::string(origin) + " as .npy: " + why);
}

// The value of `key` in the header's Python dict literal, as raw text.
std::string dict_value(const std::string& dict, const std::string& key, std::string_view origin) {
  auto at = dict.find("'" + key + "'");
  if (at == std::string::npos) reject(origin, "header has no '" + key + "'");
  auto colon = dict.find(':', at);
  if (colon == std::string::npos) reject(origin, "malformed header");
  auto begin = dict.find_first_not_of(' ', colon + 1);
  if (begin == std::string::npos) reject(origin, "malformed header");
  char open = dict[begin];
  size_t end;
  if (open == '\'' || open == '"') {
    end = dict.find(open, begin + 1);
    if (end == std::string::npos) reject(origin, "malformed header");
    return dict.substr(begin + 1, end - begin - 1);
  }
  if (open == '(') {
    end = dict.find(')', begin);
    if (end == std::string::npos) reject(origin, "malformed header");
    return dict.substr(begin, end - begin + 1);
  }
  end = dict.find_first_of(",}", begin);
  return dict.substr(begin, end - begin);
}

c10::ScalarType scalar_type_from_descr(const std::string& descr, bool* swap,
                                       std::string_view origin) {
  if (descr.size() < 3) reject(origin, "unsupported dtype '" + descr + "'");
  char order = descr[0];
  char kind = descr[1];
  const std::string digits = descr.substr(2);
  if (digits.empty() || digits.size() > 2 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    reject(origin,
           "unsupported dtype '" + descr + "' (expected bool, int, uint8, float or complex)");
  }
  int size = std::stoi(digits);
  bool little = host_is_little_endian();
  *swap = size > 1 && ((order == '>' && little) || (order == '<' && !little));
  switch (kind) {
    case 'b':
      if (size == 1) return c10::kBool;
      break;
    case 'i':
      if (size == 1) return c10::kChar;
      if (size == 2) return c10::kShort;
      if (size == 4) return c10::kInt;
      if (size == 8) return c10::kLong;
      break;
    case 'u':
      if (size == 1) return c10::kByte;
      reject(origin, "dtype uint" + std::to_string(size * 8) +
                         " has no libtorch equivalent; save it as int" +
                         std::to_string(size * 16 > 64 ? 64 : size * 16) + " instead");
    case 'f':
      if (size == 2) return c10::kHalf;
      if (size == 4) return c10::kFloat;
      if (size == 8) return c10::kDouble;
      break;
    case 'c':
      if (size == 8) return c10::kComplexFloat;
      if (size == 16) return c10::kComplexDouble;
      break;
    default:
      break;
  }
  reject(origin, "unsupported dtype '" + descr + "' (expected bool, int, uint8, float or complex)");
}

std::vector<int64_t> parse_shape(const std::string& tuple, std::string_view origin) {
  std::vector<int64_t> shape;
  if (tuple.size() < 2 || tuple.front() != '(' || tuple.back() != ')') {
    reject(origin, "malformed shape " + tuple + " (expected a tuple of sizes)");
  }
  std::string inner = tuple.substr(1, tuple.size() - 2);
  std::stringstream items(inner);
  std::string item;
  while (std::getline(items, item, ',')) {
    auto first = item.find_first_not_of(' ');
    if (first == std::string::npos) continue;
    char* end = nullptr;
    errno = 0;
    long long dim = std::strtoll(item.c_str() + first, &end, 10);
    if (end == item.c_str() + first || dim < 0 || errno == ERANGE) {
      reject(origin, "malformed shape " + tuple + " (expected non-negative sizes)");
    }
    shape.push_back(dim);
  }
  return shape;
}

// Where the header dict starts and how long it is, from the fixed-size preamble.
std::pair<size_t, size_t> header_extent(std::string_view bytes, std::string_view origin) {
  if (bytes.size() < 10 || bytes.substr(0, kMagicSize) != std::string_view(kMagic, kMagicSize)) {
    reject(origin, "not a .npy file (no \\x93NUMPY magic)");
  }
  auto byte = [&](size_t i) { return static_cast<size_t>(static_cast<uint8_t>(bytes[i])); };
  uint8_t major = static_cast<uint8_t>(bytes[6]);
  if (major == 1) return {10, byte(8) | byte(9) << 8};
  if (major != 2 && major != 3)
    reject(origin, "unsupported format version " + std::to_string(major));
  if (bytes.size() < 12) reject(origin, "truncated header");
  size_t length = byte(8) | byte(9) << 8 | byte(10) << 16 | byte(11) << 24;
  if (length > kMaxHeaderSize) {
    reject(origin, "the header says it is " + std::to_string(length) +
                       " bytes long, more than the " + std::to_string(kMaxHeaderSize) +
                       " numpy.load reads");
  }
  return {12, length};
}

NpyHeader parse_header(std::string_view bytes, std::string_view origin) {
  auto [prefix, header_len] = header_extent(bytes, origin);
  if (bytes.size() < prefix + header_len) reject(origin, "truncated header");
  std::string dict(bytes.substr(prefix, header_len));

  NpyHeader header;
  std::string fortran = dict_value(dict, "fortran_order", origin);
  if (fortran.find("True") != std::string::npos) {
    auto shape = parse_shape(dict_value(dict, "shape", origin), origin);
    if (shape.size() > 1) {
      reject(origin,
             "Fortran-order arrays are not supported; save with "
             "numpy.save(path, numpy.ascontiguousarray(array))");
    }
  }
  header.type =
      scalar_type_from_descr(dict_value(dict, "descr", origin), &header.swap_bytes, origin);
  header.shape = parse_shape(dict_value(dict, "shape", origin), origin);
  header.data_offset = prefix + header_len;
  header.data_bytes = checked_nbytes(header.shape, c10::elementSize(header.type),
                                     "cannot read " + std::string(origin) + " as .npy");
  return header;
}

void swap_element_bytes(at::Tensor& tensor) {
  size_t width = tensor.element_size();
  if (tensor.is_complex()) width /= 2;  // each half is swapped on its own
  auto* data = static_cast<uint8_t*>(tensor.data_ptr());
  size_t total = tensor.nbytes();
  for (size_t at = 0; at < total; at += width) std::reverse(data + at, data + at + width);
}

// Allocates only once the file is known to hold the data: a header may claim any shape.
at::Tensor tensor_from_header(const NpyHeader& header, size_t available, std::string_view origin) {
  if (available < header.data_bytes) {
    reject(origin, "truncated data (the header's shape " + shape_text(header.shape) + " needs " +
                       std::to_string(header.data_bytes) + " bytes, the file has " +
                       std::to_string(available) + ")");
  }
  return at::empty(header.shape, at::TensorOptions().dtype(header.type));
}

std::string descr_for(c10::ScalarType type) {
  const char order = host_is_little_endian() ? '<' : '>';
  switch (type) {
    case c10::kBool:
      return "|b1";
    case c10::kByte:
      return "|u1";
    case c10::kChar:
      return "|i1";
    case c10::kShort:
      return std::string(1, order) + "i2";
    case c10::kInt:
      return std::string(1, order) + "i4";
    case c10::kLong:
      return std::string(1, order) + "i8";
    case c10::kHalf:
      return std::string(1, order) + "f2";
    case c10::kFloat:
      return std::string(1, order) + "f4";
    case c10::kDouble:
      return std::string(1, order) + "f8";
    case c10::kComplexFloat:
      return std::string(1, order) + "c8";
    case c10::kComplexDouble:
      return std::string(1, order) + "c16";
    default:
      throw unsupported(std::string("cannot write a ") + c10::toString(type) +
                        " tensor as .npy (NumPy has no such dtype); convert it first");
  }
}

// The data as read, made valid and native: bool bytes other than 0 and 1 are refused (reading
// them is undefined behaviour), big-endian elements swapped.
void finish_data(at::Tensor& tensor, const NpyHeader& header, std::string_view origin) {
  if (header.type == c10::kBool && header.data_bytes > 0) {
    check_bool_bytes(
        std::string_view(static_cast<const char*>(tensor.data_ptr()), header.data_bytes),
        "cannot read " + std::string(origin) + " as .npy");
  }
  if (header.swap_bytes) swap_element_bytes(tensor);
}

}  // namespace

at::Tensor parse_npy(std::string_view bytes, std::string_view origin) {
  NpyHeader header = parse_header(bytes, origin);
  at::Tensor tensor = tensor_from_header(header, bytes.size() - header.data_offset, origin);
  size_t need = header.data_bytes;
  if (need > 0) std::memcpy(tensor.data_ptr(), bytes.data() + header.data_offset, need);
  finish_data(tensor, header, origin);
  return tensor;
}

at::Tensor read_npy(const std::filesystem::path& path) {
  std::string origin = path.string();
  // A device or a pipe has no size to check the header against (it could yield bytes forever),
  // and opening a FIFO blocks: the file's type is checked before it is opened.
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (!ec && std::filesystem::exists(status) && !std::filesystem::is_regular_file(status)) {
    throw bad_input("cannot read " + origin + ": not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw bad_input("cannot read " + origin + ": no such file or not readable");
  auto file_size = std::filesystem::file_size(path, ec);
  if (ec) throw bad_input("cannot read " + origin + ": " + ec.message());
  std::string head(12, '\0');
  in.read(head.data(), head.size());
  head.resize(static_cast<size_t>(in.gcount()));
  auto [prefix, header_len] = header_extent(head, origin);
  if (prefix + header_len > head.size()) {
    size_t have = head.size();
    head.resize(prefix + header_len);
    in.read(head.data() + have, static_cast<std::streamsize>(head.size() - have));
    head.resize(have + static_cast<size_t>(in.gcount()));
  }
  NpyHeader header = parse_header(head, origin);
  at::Tensor tensor = tensor_from_header(
      header, file_size > header.data_offset ? file_size - header.data_offset : 0, origin);
  size_t already = head.size() - header.data_offset;  // data bytes read with the header
  size_t need = header.data_bytes;
  if (need == 0) return tensor;
  auto* out = static_cast<char*>(tensor.data_ptr());
  size_t first = std::min(already, need);
  std::memcpy(out, head.data() + header.data_offset, first);
  size_t got = first;
  if (need > first) {
    in.read(out + first, static_cast<std::streamsize>(need - first));
    got += static_cast<size_t>(in.gcount());
  }
  if (got < need) {
    reject(origin, "truncated data (expected " + std::to_string(need) + " bytes, found " +
                       std::to_string(got) + ")");
  }
  finish_data(tensor, header, origin);
  return tensor;
}

std::string encode_npy(const at::Tensor& tensor) {
  at::Tensor data = tensor.to(at::kCPU).contiguous();
  std::string shape = "(";
  for (int64_t i = 0; i < data.dim(); ++i) {
    shape +=
        std::to_string(data.size(i)) + (data.dim() == 1 ? "," : (i + 1 < data.dim() ? ", " : ""));
  }
  shape += ")";
  std::string dict = "{'descr': '" + descr_for(data.scalar_type()) +
                     "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad so that the data starts on a 64-byte boundary, as NumPy does.
  size_t unpadded = kMagicSize + 4 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict.push_back('\n');

  std::string out(kMagic, kMagicSize);
  out.push_back('\x01');
  out.push_back('\x00');
  out.push_back(static_cast<char>(dict.size() & 0xff));
  out.push_back(static_cast<char>((dict.size() >> 8) & 0xff));
  out += dict;
  out.append(static_cast<const char*>(data.data_ptr()), data.nbytes());
  return out;
}

void write_npy(const std::filesystem::path& path, const at::Tensor& tensor) {
  std::string bytes = encode_npy(tensor);
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw bad_input("cannot write " + path.string());
}

}  // namespace torchship
