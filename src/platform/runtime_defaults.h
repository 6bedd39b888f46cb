// The library's own side of runtime.h (implemented in runtime.cpp).
#pragma once

namespace torchship {

// The process-wide defaults (intra-op threads), unless configure_runtime() ran before; called by
// Model::load.
void apply_runtime_defaults();

}  // namespace torchship
