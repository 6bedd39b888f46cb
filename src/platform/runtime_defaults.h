// The library's own side of runtime.h (implemented in runtime.cpp).
#pragma once

namespace torchship {

// The process-wide defaults (intra-op threads), unless configure_runtime() ran before; called by
// Model::load.
void apply_runtime_defaults();

// RuntimeOptions::keep_compiled_packages as configured (false until set); read by the
// AOTInductor backend at each load.
bool keep_compiled_packages();

}  // namespace torchship
