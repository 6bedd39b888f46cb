// torchship's one comparison rule, used by golden checks, the load-time optimization check and
// tests (python/torchship/tolerance.py explains it): a float tensor passes when
// |actual - expected| <= atol + rtol * |expected| everywhere (NaN matches NaN); integer and
// boolean tensors must be equal.
#pragma once

#include <optional>
#include <string>

#include <ATen/core/ivalue.h>

#include "torchship/manifest.h"

namespace torchship {

// How one leaf of an output compared.
struct GoldenLeaf {
  std::string path;  // "output", "output[1]", "output.boxes", ...
  double max_abs = 0;
  double max_rel = 0;
  double atol = 0;  // the absolute tolerance this float leaf was checked with
  bool ok = true;
  std::string problem;  // why it failed beyond tolerance: shape, dtype or value mismatch
};

// The rule on two tensors. Without `atol`, the default for this output's scale:
// rtol * max(1, max |expected|).
GoldenLeaf compare_tensors(const at::Tensor& expected, const at::Tensor& actual, double rtol,
                           std::optional<double> atol = std::nullopt,
                           const std::string& path = "output");

// "" when `actual` matches `expected` leaf by leaf by that rule (tensors with the default atol,
// other leaves exactly), else the first difference: "output[1]: values differ beyond tolerance,
// max abs error 0.5". `manifest` (may be null) names the leaves.
std::string first_difference(const c10::IValue& expected, const c10::IValue& actual, double rtol,
                             const Manifest* manifest = nullptr);

// That default atol of an expected tensor: rtol * max(1, max |expected|).
double scaled_atol(const at::Tensor& expected, double rtol);

}  // namespace torchship
