#include "torchship/comparison.h"

#include <cmath>

#include <ATen/ATen.h>

#include "torchship/value_tree.h"

namespace torchship {

double scaled_atol(const at::Tensor& expected, double rtol) {
  double largest = 0;
  if (expected.is_floating_point() && expected.numel() > 0) {
    largest = at::nan_to_num(expected.to(at::kDouble).abs(), 0, 0, 0).max().item<double>();
  }
  return rtol * std::max(1.0, largest);
}

GoldenLeaf compare_tensors(const at::Tensor& expected, const at::Tensor& actual, double rtol,
                           std::optional<double> atol, const std::string& path) {
  at::Tensor got = actual.to(at::kCPU);
  GoldenLeaf leaf{path, 0, 0, 0, true, ""};
  if (got.sizes() != expected.sizes() || got.scalar_type() != expected.scalar_type()) {
    leaf.ok = false;
    leaf.problem = "expected " + describe(expected) + ", got " + describe(got);
    return leaf;
  }
  if (got.numel() == 0) return leaf;
  if (!expected.is_floating_point()) {
    leaf.ok = at::equal(got, expected);
    leaf.max_abs = (got.to(at::kDouble) - expected.to(at::kDouble)).abs().max().item<double>();
    if (!leaf.ok) leaf.problem = "values differ";
    return leaf;
  }
  leaf.atol = atol.value_or(scaled_atol(expected, rtol));
  at::Tensor a = got.to(at::kDouble);
  at::Tensor b = expected.to(at::kDouble);
  at::Tensor diff = (a - b).abs();
  at::Tensor same = a.eq(b) | (a.isnan() & b.isnan());  // equal infinities, NaN for NaN
  diff = at::where(same, at::zeros_like(diff), diff);
  leaf.max_abs = diff.max().item<double>();
  leaf.max_rel = (diff / b.abs().clamp_min(1e-12)).max().item<double>();
  leaf.ok = (diff <= leaf.atol + rtol * b.abs()).all().item<bool>();
  if (!leaf.ok) leaf.problem = "values differ beyond tolerance";
  return leaf;
}

std::string first_difference(const c10::IValue& expected, const c10::IValue& actual, double rtol,
                             const Manifest* manifest) {
  auto want = output_leaves(expected, manifest);
  auto got = output_leaves(actual, manifest);
  if (want.size() != got.size()) {
    return "output: " + std::to_string(got.size()) + " leaves, expected " +
           std::to_string(want.size());
  }
  for (size_t i = 0; i < want.size(); ++i) {
    const c10::IValue& a = want[i].value;
    const c10::IValue& b = got[i].value;
    if (want[i].path != got[i].path)
      return "output: leaf " + got[i].path + ", expected " + want[i].path;
    if (a.isTensor() && b.isTensor()) {
      GoldenLeaf leaf =
          compare_tensors(a.toTensor(), b.toTensor(), rtol, std::nullopt, want[i].path);
      if (!leaf.ok)
        return leaf.path + ": " + leaf.problem + ", max abs error " + c10::str(leaf.max_abs);
    } else if (a.tagKind() != b.tagKind() || c10::str(a) != c10::str(b)) {
      return want[i].path + ": " + c10::str(b) + ", expected " + c10::str(a);
    }
  }
  return "";
}

}  // namespace torchship
