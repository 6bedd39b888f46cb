// Which form of an archive of every form runs (LoadOptions::engine): each form that loads and
// reproduces its golden vectors on this machine is timed on its first golden case and on the
// same inputs at the smallest batch, and the fastest by the geometric mean of the two is kept;
// a form named by the caller is loaded alone.
#pragma once

#include <string>
#include <vector>

#include "torchship/model.h"

namespace torchship {

struct EngineChoice {
  Model model;                     // the form that runs
  std::vector<std::string> notes;  // what was tried, left out and timed
};

// Throws Error(BadInput) for an unknown engine, or one the archive lacks; Error(BadModel) when
// no form loads and reproduces its golden vectors (each one's reason named).
EngineChoice choose_engine(const Archive& archive, const LoadOptions& options);

// Throws Error(BadInput) unless `engine` is auto or a form an archive of `format` holds.
void check_engine(const std::string& engine, const Archive& archive);

}  // namespace torchship
