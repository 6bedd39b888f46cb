// Golden vectors: the input/output pairs recorded at export, rerun on the target machine to
// prove that it computes what Python computed.
#pragma once

#include <string>
#include <vector>

#include "torchship/comparison.h"
#include "torchship/model.h"

namespace torchship {

struct GoldenCase {
  // What the case checks beyond the example, "" for the example and the caller's cases:
  // "input 'image' dim 0 = 97" for a size check (each dynamic size is checked at several).
  std::string label;
  std::vector<GoldenLeaf> leaves;
  bool ok() const;
};

struct GoldenReport {
  double rtol = 0;
  double atol = 0;  // the index's own; float leaves carry the one they were checked with
  std::vector<GoldenCase> cases;
  bool ok() const;
};

// Reruns every golden case of the model's archive and compares by torchship's rule
// (comparison.h), with the rtol and per-output atol recorded at export (strings and other values
// exactly). Throws Error(BadInput) when the archive has no golden vectors and Error(BadModel)
// when they are unreadable.
GoldenReport check_golden(const Model& model);

// model.forward() on golden inputs (the archive's own): where they fail, this machine cannot run
// the archive, whatever the caller brings: Error(Unsupported) "cannot run PATH on this machine:
// it fails on its own golden inputs (...)", with what may explain it (bf16 kernels).
c10::IValue forward_golden(const Model& model, std::vector<c10::IValue> inputs);

// The inputs of golden case `number`, typed by the model's forward schema; empty when the
// archive has no such case.
std::vector<c10::IValue> golden_inputs(const Model& model, size_t number = 0);

}  // namespace torchship
