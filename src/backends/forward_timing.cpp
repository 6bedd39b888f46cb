#include "backends/forward_timing.h"

#include <algorithm>
#include <chrono>

namespace torchship::backends {

double best_forward_ms(const std::function<void()>& forward, int warmups, double beaten_ms) {
  using Clock = std::chrono::steady_clock;
  constexpr double kBudgetMs = 100;
  constexpr int kMostRuns = 5;
  constexpr int kFewestRuns = 2;
  // Slower than this multiple of the best so far on its first timed call: no contender.
  constexpr double kHopeless = 1.5;
  for (int run = 0; run < warmups; ++run) forward();
  double best = 0, spent = 0;
  for (int run = 0; run < kMostRuns; ++run) {
    auto started = Clock::now();
    forward();
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
    best = run == 0 ? ms : std::min(best, ms);
    spent += ms;
    if (run == 0 && beaten_ms > 0 && ms > kHopeless * beaten_ms) break;
    if (run + 1 >= kFewestRuns && spent >= kBudgetMs) break;
  }
  return best;
}

}  // namespace torchship::backends
