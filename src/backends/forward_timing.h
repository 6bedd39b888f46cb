// How long a model's forward takes, measured at load to choose between optimizations that all
// compute the right numbers: the cheapest measurement that still tells them apart.
#pragma once

#include <functional>

namespace torchship::backends {

// The best of a few timed calls of `forward` (milliseconds), after `warmups` untimed ones
// (TorchScript's profiling executor specializes a graph over its first two runs). The best, not
// the median: on a shared machine noise only ever adds time. Fast forwards are timed up to 5
// times within about 100 ms, slow ones twice; a candidate whose first timed call is already
// far slower than `beaten_ms` (the best so far; 0 for none) is timed once.
double best_forward_ms(const std::function<void()>& forward, int warmups, double beaten_ms = 0);

}  // namespace torchship::backends
