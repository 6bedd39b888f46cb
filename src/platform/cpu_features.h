// The x86 instruction-set extensions this CPU and its operating system support, by the names
// Linux's /proc/cpuinfo gives them ("avx2", "avx512f", "avx512_vnni"): compiled packages record
// the ones their code may use, and running them on a CPU without one dies of SIGILL.
#pragma once

#include <string>
#include <vector>

namespace torchship {

// Whether this CPU can run code that uses `feature`. A name outside the vocabulary torchship
// knows, or any name on a CPU that is not x86-64, gives false with *known set to false.
bool cpu_has_feature(const std::string& feature, bool* known = nullptr);

// The features in `required` this CPU lacks, in order (unknown names are not listed).
std::vector<std::string> missing_cpu_features(const std::vector<std::string>& required);

}  // namespace torchship
