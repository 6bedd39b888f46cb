// Paths into the folder tests/fixtures/make_fixtures.py writes, and small comparison helpers.
#pragma once

#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <torch/script.h>

namespace torchship::testing {

// A file of tests/fixtures/make_fixtures.py's folder; a missing one fails the test loudly.
std::filesystem::path fixture(const std::string& name);
// A file of examples/fashion_mnist/build.py's folder (the trained model and its test set).
std::filesystem::path trained(const std::string& name);

// Max |a - b| over all elements, after checking shape and dtype agree.
double max_abs_diff(const at::Tensor& expected, const at::Tensor& actual);

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
