// Golden vectors: the input/output pairs recorded at export, rerun on the target machine to
// prove that it computes what Python computed.
#pragma once

#include <string>
#include <vector>

#include "torchship/model.h"

namespace torchship {

struct GoldenLeaf {
  std::string path;  // "output", "output[1]", "output.boxes", ...
  double max_abs = 0;
  double max_rel = 0;
  bool ok = true;
  std::string problem;  // why it failed beyond tolerance: shape, dtype or value mismatch
};

struct GoldenCase {
  std::vector<GoldenLeaf> leaves;
  bool ok() const;
};

struct GoldenReport {
  double rtol = 0;
  double atol = 0;
  std::vector<GoldenCase> cases;
  bool ok() const;
};

// Reruns every golden case of the model's archive. A value passes when
// |actual - expected| <= atol + rtol * |expected| everywhere (integers, booleans and strings
// exactly). Throws Error(BadInput) when the archive has no golden vectors and Error(BadModel)
// when they are unreadable.
GoldenReport check_golden(const Model& model);

// The inputs of golden case `number`, typed by the model's forward schema; empty when the
// archive has no such case.
std::vector<c10::IValue> golden_inputs(const Model& model, size_t number = 0);

}  // namespace torchship
