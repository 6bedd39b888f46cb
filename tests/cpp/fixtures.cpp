#include "fixtures.h"

#include <cstdlib>

namespace torchship::testing {

namespace {

std::filesystem::path in_folder(const char* variable, const char* built_in,
                                const std::string& name) {
  const char* folder = std::getenv(variable);
  auto path = std::filesystem::path(folder ? folder : built_in) / name;
  EXPECT_TRUE(std::filesystem::exists(path))
      << path << " is missing: scripts/test.sh builds it before the tests run";
  return path;
}

}  // namespace

std::filesystem::path fixture(const std::string& name) {
  return in_folder("TORCHSHIP_FIXTURES", TORCHSHIP_TEST_FIXTURES, name);
}

std::filesystem::path trained(const std::string& name) {
  return in_folder("TORCHSHIP_MODELS", TORCHSHIP_TEST_MODELS, name);
}

double max_abs_diff(const at::Tensor& expected, const at::Tensor& actual) {
  EXPECT_EQ(expected.sizes(), actual.sizes());
  EXPECT_EQ(expected.scalar_type(), actual.scalar_type());
  if (expected.sizes() != actual.sizes()) return INFINITY;
  if (expected.numel() == 0) return 0;
  return (expected.to(at::kDouble) - actual.to(at::kCPU).to(at::kDouble))
      .abs()
      .max()
      .item<double>();
}

}  // namespace torchship::testing
