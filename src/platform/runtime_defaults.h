// The library's own side of runtime.h (implemented in runtime.cpp).
#pragma once

#include <string>

#include "torchship/runtime.h"

namespace torchship {

// The process-wide defaults (intra-op threads), unless configure_runtime() ran before; called by
// Model::load.
void apply_runtime_defaults();

// RuntimeOptions::keep_compiled_packages as configured (false until set); read by the
// AOTInductor backend at each load.
bool keep_compiled_packages();

// RuntimeOptions::package_workers and package_worker_program as configured (Off and "" until
// set).
PackageWorkers package_workers();
std::string package_worker_program();

}  // namespace torchship
