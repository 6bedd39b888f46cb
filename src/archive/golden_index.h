// The golden index (torchship/golden/index.json): the archive's record of the input/output pairs
// written at export, and the tolerances they were checked with. Rerunning them is the model
// layer's (torchship/golden.h); this is only the stored structure.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "torchship/archive.h"

namespace torchship {

// {"rtol", "atol", "cases": [{"inputs": [TREE, ...], "output": TREE}, ...]}, its structure
// validated and tolerances defaulted for old archives. `origin` names the archive in messages.
// Throws Error(BadModel).
struct GoldenIndex {
  double rtol = 1e-4;
  double atol = 1e-4;
  nlohmann::json tree;
};
GoldenIndex parse_golden_index(const std::string& text, const std::string& origin);

// The archive's index tree, validated as above. Throws Error(BadInput) when the archive has no
// golden vectors.
nlohmann::json read_golden_index(const Archive& archive);

// The rtol the archive's golden vectors were recorded with; nullopt without golden vectors.
std::optional<double> golden_rtol(const Archive& archive);

}  // namespace torchship
