#include "fixtures.h"

#include <unistd.h>

#include <cstdlib>

#include "archive/golden_index.h"
#include "torchship/golden.h"

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

bool have_fixture(const std::string& name) {
  const char* folder = std::getenv("TORCHSHIP_FIXTURES");
  return std::filesystem::exists(std::filesystem::path(folder ? folder : TORCHSHIP_TEST_FIXTURES) /
                                 name);
}

std::filesystem::path scratch(const std::string& name) {
  struct Folder {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("torchship-tests-" + std::to_string(::getpid()));
    Folder() { std::filesystem::create_directories(path); }
    ~Folder() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  };
  static Folder folder;
  return folder.path / name;
}

std::filesystem::path trained(const std::string& name) {
  return in_folder("TORCHSHIP_MODELS", TORCHSHIP_TEST_MODELS, name);
}

bool have_trained(const std::string& name) {
  const char* folder = std::getenv("TORCHSHIP_MODELS");
  return std::filesystem::exists(std::filesystem::path(folder ? folder : TORCHSHIP_TEST_MODELS) /
                                 name);
}

bool bf16_convolutions_run() {
  try {
    at::conv2d(at::ones({1, 1, 4, 4}, at::kBFloat16), at::ones({1, 1, 3, 3}, at::kBFloat16));
    return true;
  } catch (const std::exception&) {  // c10::Error, or oneDNN's own dnnl::error
    return false;
  }
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

::testing::AssertionResult close_by_rule(const at::Tensor& expected, const at::Tensor& actual,
                                         const Archive& archive) {
  auto rtol = golden_rtol(archive);
  if (!rtol) return ::testing::AssertionFailure() << archive.path() << " has no golden vectors";
  GoldenLeaf leaf = compare_tensors(expected, actual, *rtol);
  if (leaf.ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << leaf.problem << ": max abs " << leaf.max_abs << ", atol "
                                       << leaf.atol << ", rtol " << *rtol;
}

double rule_atol(const at::Tensor& expected, const Archive& archive) {
  auto rtol = golden_rtol(archive);
  EXPECT_TRUE(rtol.has_value()) << archive.path() << " has no golden vectors";
  return scaled_atol(expected, rtol.value_or(0));
}

::testing::AssertionResult argmax_agrees(const at::Tensor& expected_scores,
                                         const at::Tensor& expected, const at::Tensor& actual,
                                         int64_t dim, double atol, int64_t* ties) {
  if (!expected.sizes().equals(actual.sizes())) {
    return ::testing::AssertionFailure()
           << "shape " << actual.sizes() << ", expected " << expected.sizes();
  }
  at::Tensor best_two = std::get<0>(expected_scores.to(at::kDouble).topk(2, dim));
  at::Tensor decided = (best_two.select(dim, 0) - best_two.select(dim, 1)) > 2 * atol;
  at::Tensor differ = actual.to(at::kCPU).ne(expected) & decided;
  if (ties) *ties = (~decided).sum().item<int64_t>();
  int64_t count = differ.sum().item<int64_t>();
  if (count == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << count << " of " << decided.sum().item<int64_t>()
         << " decided positions (best two scores more than 2 * atol = " << 2 * atol
         << " apart) got another class";
}

const Model& classifier() {
  static Model model = Model::load(fixture("classifier.pt"));
  return model;
}

const Model& segmenter() {
  static Model model = Model::load(fixture("segmentation.pt"));
  return model;
}

void put_big(std::string& bytes, size_t at, uint64_t value, size_t count) {
  for (size_t i = 0; i < count; ++i)
    bytes[at + i] = static_cast<char>(value >> (8 * (count - 1 - i)));
}

void put_little(std::string& bytes, size_t at, uint64_t value, size_t count) {
  for (size_t i = 0; i < count; ++i) bytes[at + i] = static_cast<char>(value >> (8 * i));
}

}  // namespace torchship::testing
