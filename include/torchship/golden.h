// Golden vectors: the input/output pairs recorded at export, rerun on the target machine to
// prove that it computes what Python computed.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "torchship/model.h"

namespace torchship {

struct GoldenLeaf {
  std::string path;  // "output", "output[1]", "output.boxes", ...
  double max_abs = 0;
  double max_rel = 0;
  double atol = 0;  // the absolute tolerance this float leaf was checked with
  bool ok = true;
  std::string problem;  // why it failed beyond tolerance: shape, dtype or value mismatch
};

struct GoldenCase {
  std::vector<GoldenLeaf> leaves;
  bool ok() const;
};

struct GoldenReport {
  double rtol = 0;
  double atol = 0;  // the index's own; float leaves carry the one they were checked with
  std::vector<GoldenCase> cases;
  bool ok() const;
};

// torchship's one comparison rule (golden vectors, the load-time optimization check, tests;
// python/torchship/tolerance.py explains it): a float tensor passes when
// |actual - expected| <= atol + rtol * |expected| everywhere (NaN matches NaN); integer and
// boolean tensors must be equal. Without `atol`, the default for this output's scale:
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

// Reruns every golden case of the model's archive and compares by that rule, with the rtol and
// per-output atol recorded at export (strings and other values exactly). Throws
// Error(BadInput) when the archive has no golden vectors and Error(BadModel) when they are
// unreadable.
GoldenReport check_golden(const Model& model);

// The golden index (torchship/golden/index.json) of an archive, its structure validated:
// {"rtol", "atol", "cases": [{"inputs": [TREE, ...], "output": TREE}, ...]}, tolerances
// defaulted for old archives. `origin` names the archive in messages. Throws Error(BadModel).
struct GoldenIndex {
  double rtol = 1e-4;
  double atol = 1e-4;
  nlohmann::json tree;
};
GoldenIndex parse_golden_index(const std::string& text, const std::string& origin);

// The rtol the archive's golden vectors were recorded with; nullopt without golden vectors.
std::optional<double> golden_rtol(const Archive& archive);

// model.forward() on golden inputs (the archive's own): where they fail, this machine cannot run
// the archive, whatever the caller brings: Error(Unsupported) "cannot run PATH on this machine:
// it fails on its own golden inputs (...)", with what may explain it (bf16 kernels).
c10::IValue forward_golden(const Model& model, std::vector<c10::IValue> inputs);

// The inputs of golden case `number`, typed by the model's forward schema; empty when the
// archive has no such case.
std::vector<c10::IValue> golden_inputs(const Model& model, size_t number = 0);

}  // namespace torchship
