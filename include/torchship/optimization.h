// The load-time optimizations of a TorchScript model, and the report of what choosing one came
// to (Model::optimization(), LoadOptions::optimization).
#pragma once

#include <string>
#include <vector>

namespace torchship {

// The optimizations a TorchScript model may run with, in the order they are tried.
inline const std::vector<std::string> kOptimizationCandidates = {
    "prepacked",               // frozen, 2-D convolutions on oneDNN weights packed once
    "optimize_for_inference",  // frozen + torch.jit.optimize_for_inference
    "frozen",                  // torch.jit.freeze only
};

struct OptimizationTrial {
  std::string candidate;  // one of kOptimizationCandidates
  bool applies = true;    // false: it would change nothing here (`miss` says why)
  std::string miss;       // why it was refused: its difference from the reference, a failure
  double forward_ms = 0;  // its best forward on the reference inputs; 0 when not timed
};

// What choosing an optimization came to (Model::optimization()).
struct OptimizationReport {
  std::string chosen;    // a candidate's name, "stored", or "" when nothing was decided yet
  double stored_ms = 0;  // the stored module's best forward; 0 when not timed
  std::vector<OptimizationTrial> trials;
  double seconds = 0;  // what verifying and timing added to the load (or the first forward)
};

}  // namespace torchship
