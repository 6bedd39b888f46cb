// NumPy .npy files: every dtype and version read and written, hostile headers refused.

#include <fstream>

#include <ATen/ATen.h>

#include "fixtures.h"
#include "torchship/npy.h"
#include "torchship/tensor_json.h"

namespace torchship {
namespace {

using testing::error_message;
using testing::fixture;
using testing::scratch;

// A .npy file whose header says `shape` and whose data is `data_bytes` zero bytes.
std::string npy_claiming(const std::string& shape, size_t data_bytes, char major = 1) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  dict.append(118 - dict.size() % 64, ' ');
  dict.push_back('\n');
  std::string out = std::string("\x93NUMPY", 6) + major + '\0';
  out.push_back(static_cast<char>(dict.size() & 0xff));
  out.push_back(static_cast<char>(dict.size() >> 8));
  if (major != 1) out.append(2, '\0');
  return out + dict + std::string(data_bytes, '\0');
}

std::filesystem::path temp_file(const std::string& name) {
  return scratch(name);
}

TEST(Npy, RoundTripsEveryNumericDtype) {
  const c10::ScalarType types[] = {
      c10::kBool, c10::kByte,  c10::kChar,   c10::kShort,        c10::kInt,          c10::kLong,
      c10::kHalf, c10::kFloat, c10::kDouble, c10::kComplexFloat, c10::kComplexDouble};
  for (auto type : types) {
    at::Tensor original = (at::arange(24, at::kDouble).reshape({2, 3, 4}) - 7).to(type);
    at::Tensor back = parse_npy(encode_npy(original), "memory");
    EXPECT_EQ(back.scalar_type(), type) << c10::toString(type);
    EXPECT_TRUE(at::equal(back, original)) << c10::toString(type);
  }
}

TEST(Npy, RoundTripsScalarsEmptyAndNonContiguousTensors) {
  at::Tensor scalar = at::scalar_tensor(3.5, at::kFloat);
  EXPECT_TRUE(at::equal(parse_npy(encode_npy(scalar), "m"), scalar));
  at::Tensor empty = at::zeros({0, 3}, at::kLong);
  EXPECT_EQ(parse_npy(encode_npy(empty), "m").sizes(), empty.sizes());
  at::Tensor transposed = at::arange(6, at::kInt).reshape({2, 3}).t();
  EXPECT_TRUE(at::equal(parse_npy(encode_npy(transposed), "m"), transposed));
}

TEST(Npy, WritesFilesThatReadBack) {
  auto path = temp_file("roundtrip.npy");
  at::Tensor original = at::rand({5, 7});
  write_npy(path, original);
  EXPECT_TRUE(at::equal(read_npy(path), original));
  std::filesystem::remove(path);
}

TEST(Npy, ReadsWhatNumPyWrote) {
  at::Tensor logits = read_npy(fixture("classifier_chelsea.npy"));
  EXPECT_EQ(logits.scalar_type(), c10::kFloat);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{1, 1000}));
  at::Tensor batch = read_npy(fixture("segmentation_batch_input.npy"));
  EXPECT_EQ(batch.scalar_type(), c10::kByte);
  EXPECT_EQ(batch.sizes(), (std::vector<int64_t>{2, 72, 88, 3}));
}

TEST(Npy, RejectsFortranOrder) {
  auto path = fixture("fortran.npy");
  EXPECT_EQ(error_message([&] { read_npy(path); }),
            "cannot read " + path.string() +
                " as .npy: Fortran-order arrays are not supported; save with "
                "numpy.save(path, numpy.ascontiguousarray(array))");
}

TEST(Npy, RejectsWhatIsNotNpy) {
  EXPECT_EQ(error_message([] { parse_npy("hello world, this is text", "x.npy"); }),
            "cannot read x.npy as .npy: not a .npy file (no \\x93NUMPY magic)");
  std::string bytes = encode_npy(at::ones({100}));
  EXPECT_EQ(error_message([&] { parse_npy(bytes.substr(0, bytes.size() - 8), "cut.npy"); }),
            "cannot read cut.npy as .npy: truncated data (the header's shape [100] needs 400 "
            "bytes, the file has 392)");
  EXPECT_EQ(error_message([] { read_npy("/nonexistent/x.npy"); }),
            "cannot read /nonexistent/x.npy: no such file or not readable");
}

TEST(Npy, RejectsDtypesLibtorchLacks) {
  std::string bytes = encode_npy(at::ones({2}, at::kShort));
  auto at = bytes.find("<i2");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 3, "<u2");
  EXPECT_EQ(error_message([&] { parse_npy(bytes, "u16.npy"); }),
            "cannot read u16.npy as .npy: dtype uint16 has no libtorch equivalent; save it as "
            "int32 instead");
}

TEST(Npy, HeadersClaimingMoreThanTheFileAreRefusedBeforeAllocating) {
  // 4 TB claimed by a 192-byte file: refused from the header, nothing allocated.
  EXPECT_EQ(error_message([] { parse_npy(npy_claiming("(100000, 100000, 100)", 64), "big.npy"); }),
            "cannot read big.npy as .npy: truncated data (the header's shape [100000, 100000, "
            "100] needs 4000000000000 bytes, the file has 64)");
  EXPECT_EQ(error_message([] { parse_npy(npy_claiming("(9223372036854775807, 3)", 0), "o.npy"); }),
            "cannot read o.npy as .npy: shape [9223372036854775807, 3] has more elements than a "
            "tensor can hold");
  EXPECT_EQ(error_message([] { parse_npy(npy_claiming("(99999999999999999999,)", 0), "r.npy"); }),
            "cannot read r.npy as .npy: malformed shape (99999999999999999999,) (expected "
            "non-negative sizes)");
  std::string v2 = npy_claiming("(1,)", 4, 2);
  v2[8] = v2[9] = v2[10] = v2[11] = '\x7f';  // a header length of 2 GB
  EXPECT_EQ(error_message([&] { parse_npy(v2, "h.npy"); }),
            "cannot read h.npy as .npy: the header says it is 2139062143 bytes long, more than "
            "the 10000 numpy.load reads");
  // The same checks hold for files, read through the stream path.
  auto path = scratch("big.npy");
  {
    std::ofstream out(path, std::ios::binary);
    std::string bytes = npy_claiming("(100000, 100000, 100)", 64);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  EXPECT_EQ(error_message([&] { read_npy(path); }),
            "cannot read " + path.string() +
                " as .npy: truncated data (the header's shape [100000, 100000, 100] needs "
                "4000000000000 bytes, the file has 64)");
  std::filesystem::remove(path);
  // Header bytes that are not text come back escaped.
  std::string odd = npy_claiming("(3,)", 12);
  odd.replace(odd.find("<f4"), 3, "<f\xff");
  EXPECT_EQ(error_message([&] { parse_npy(odd, "odd.npy"); }),
            "cannot read odd.npy as .npy: unsupported dtype '<f\\xff' (expected bool, int, uint8, "
            "float or complex)");
}

TEST(Npy, BoolDataHoldsOnlyZerosAndOnes) {
  std::string bytes = encode_npy(at::ones({3}, at::kBool));
  bytes.back() = '\x02';
  EXPECT_EQ(error_message([&] { parse_npy(bytes, "b.npy"); }),
            "cannot read b.npy as .npy: BOOL data holds bytes 0 or 1, byte 2 is 2");
}

}  // namespace
}  // namespace torchship
