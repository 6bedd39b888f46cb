// Paths into the folder tests/fixtures/make_fixtures.py writes, and small comparison helpers.
#pragma once

#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <torch/script.h>

#include "torchship/archive.h"
#include "torchship/model.h"

namespace torchship::testing {

// A file of tests/fixtures/make_fixtures.py's folder; a missing one fails the test loudly.
std::filesystem::path fixture(const std::string& name);
// Whether the fixture folder has `name` (files made only where the fixtures' torch can).
bool have_fixture(const std::string& name);
// A file of examples/fashion_mnist/build.py's folder (the trained model and its test set).
std::filesystem::path trained(const std::string& name);
bool have_trained(const std::string& name);

// `name` in this test process's own scratch folder (made on first use under the temporary
// folder, removed when the process ends): two test runs at once never write the same file.
std::filesystem::path scratch(const std::string& name);

// Whether this libtorch runs a bf16 convolution on this CPU (1.13 needs AVX-512 for it).
bool bf16_convolutions_run();

// Max |a - b| over all elements, after checking shape and dtype agree.
double max_abs_diff(const at::Tensor& expected, const at::Tensor& actual);

// torchship's one comparison rule (comparison.h compare_tensors), with the rtol `archive`'s golden
// vectors were recorded with and the default atol for the expected tensor's scale.
::testing::AssertionResult close_by_rule(const at::Tensor& expected, const at::Tensor& actual,
                                         const Archive& archive);

// The absolute tolerance that rule gives the expected tensor (rtol * max(1, max |expected|)).
double rule_atol(const at::Tensor& expected, const Archive& archive);

// Class indices (argmax over `dim`) computed from scores that match `expected_scores` within
// `atol`: they must equal `expected` wherever the expected best two scores are more than
// 2 * atol apart. Where they are closer, rounding on another CPU may pick either class, and
// both are right answers; `ties`, when given, receives how many such positions there were.
::testing::AssertionResult argmax_agrees(const at::Tensor& expected_scores,
                                         const at::Tensor& expected, const at::Tensor& actual,
                                         int64_t dim, double atol, int64_t* ties = nullptr);

// The article's two archives (ResNet34 classifier, segmentation pipeline), loaded once per test
// binary: loading ResNet34 costs a few hundred milliseconds.
const Model& classifier();
const Model& segmenter();

// `count` bytes of `value` written into `bytes` at `at`, big- or little-endian (forged headers).
void put_big(std::string& bytes, size_t at, uint64_t value, size_t count);
void put_little(std::string& bytes, size_t at, uint64_t value, size_t count);

// The message of the torchship::Error `body` throws, or "" (and a test failure) when it does not.
template <typename Body>
std::string error_message(Body&& body);

}  // namespace torchship::testing

#include "torchship/error.h"

template <typename Body>
std::string torchship::testing::error_message(Body&& body) {
  try {
    body();
  } catch (const torchship::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a torchship::Error";
  return "";
}
