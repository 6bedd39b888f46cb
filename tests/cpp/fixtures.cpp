#include "fixtures.h"

#include <cstdlib>

namespace torchship::testing {

std::filesystem::path fixture(const std::string& name) {
  const char* folder = std::getenv("TORCHSHIP_FIXTURES");
  if (!folder) {
    ADD_FAILURE() << "TORCHSHIP_FIXTURES is not set: run the tests through ctest or "
                     "scripts/test.sh, which build the fixtures first";
    return name;
  }
  auto path = std::filesystem::path(folder) / name;
  EXPECT_TRUE(std::filesystem::exists(path)) << path << " is missing: rebuild the fixtures";
  return path;
}

double max_abs_diff(const at::Tensor& expected, const at::Tensor& actual) {
  EXPECT_EQ(expected.sizes(), actual.sizes());
  EXPECT_EQ(expected.scalar_type(), actual.scalar_type());
  if (expected.sizes() != actual.sizes()) return INFINITY;
  if (expected.numel() == 0) return 0;
  return (expected.to(at::kDouble) - actual.to(at::kCPU).to(at::kDouble)).abs().max().item<double>();
}

}  // namespace torchship::testing
