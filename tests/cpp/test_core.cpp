// The core: limits on sizes from outside, printable messages.

#include "fixtures.h"
#include "torchship/error.h"
#include "torchship/limits.h"
#include "torchship/tensor_json.h"

namespace torchship {
namespace {

using testing::error_message;

TEST(Printable, EscapesControlAndInvalidUtf8BytesAndKeepsText) {
  EXPECT_EQ(printable(std::string("a\0b\n\x1b[31m", 9)), "a\\x00b\\x0a\\x1b[31m");
  EXPECT_EQ(printable("caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\x88"),
            "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\x88");
  EXPECT_EQ(printable("\xff\xfe\xc3(\xed\xa0\x80\xc0\xaf"),  // bad leads, a surrogate, overlong
            "\\xff\\xfe\\xc3(\\xed\\xa0\\x80\\xc0\\xaf");
  EXPECT_EQ(printable(std::string(10, 'x'), 4), "xxxx ... (6 more bytes)");
  // C1 controls (CSI), a right-to-left override and a line separator: escaped, byte by byte.
  EXPECT_EQ(printable("a\xc2\x9b"
                      "31m b\xe2\x80\xae"
                      "c\xe2\x80\xa8"),
            "a\\xc2\\x9b31m b\\xe2\\x80\\xaec\\xe2\\x80\\xa8");
  // A NUL inside a name no longer cuts the message short.
  Error error = bad_input(std::string("unknown input 'a\0b'", 19));
  EXPECT_STREQ(error.what(), "unknown input 'a\\x00b'");
}

TEST(Limits, ShapesAreCheckedForRankNegativeSizesAndOverflow) {
  EXPECT_EQ(checked_numel({2, 3, 4}, "x"), 24);
  EXPECT_EQ(checked_numel({0, 5}, "x"), 0);
  EXPECT_EQ(checked_nbytes({2, 3}, 4, "x"), 24u);
  EXPECT_EQ(error_message([] {
              checked_numel({3, -1}, "input 'a'");
            }),
            "input 'a': shape [3, -1] has a negative dimension");
  EXPECT_EQ(error_message([] {
              checked_numel({int64_t{1} << 62, 4}, "input 'a'");
            }),
            "input 'a': shape [4611686018427387904, 4] has more elements than a tensor can hold");
  // An empty dimension does not hide an overflowing product: libtorch multiplies them all.
  EXPECT_EQ(error_message([] {
              checked_numel({0, int64_t{1} << 62, 4}, "x");
            }),
            "x: shape [0, 4611686018427387904, 4] has more elements than a tensor can hold");
  EXPECT_EQ(error_message([] {
              checked_nbytes({int64_t{1} << 61, 8}, 8, "x");
            }),
            "x: shape [2305843009213693952, 8] has more elements than a tensor can hold");
  EXPECT_EQ(error_message([] {
              checked_nbytes({int64_t{1} << 60, 2}, 8, "x");
            }),
            "x: shape [1152921504606846976, 2] takes more bytes than a tensor can hold");
  std::vector<int64_t> deep(65, 1);
  EXPECT_EQ(error_message([&] { checked_numel(deep, "x"); }),
            "x: a tensor has at most 64 dimensions, the shape has 65");
}

}  // namespace
}  // namespace torchship
