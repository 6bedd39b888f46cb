// How many CPUs this process may use: what the intra-op thread pool is sized by. Container
// runtimes limit a process in two ways, and libtorch's own default (its count of physical cores)
// sees neither: an affinity mask (docker --cpuset-cpus, taskset) and a CFS quota (docker --cpus,
// Kubernetes' CPU limit), which lets the process run on every CPU but throttles it once its
// threads together used `quota` microseconds of each `period`.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace torchship {

// CPUs in this process's affinity mask (all online CPUs where the mask cannot be read).
int affinity_cpus();

// The tightest CPU quota on the cgroup named by `proc_self_cgroup` (the text of
// /proc/self/cgroup) and the cgroups above it, under the cgroup file system mounted at `root`,
// in CPUs, rounded up: cgroup v2's cpu.max ("200000 100000" is 2 CPUs, "max 100000" none) or v1's
// cpu.cfs_quota_us / cpu.cfs_period_us. nullopt when nothing limits it or nothing is readable.
std::optional<int> cgroup_cpu_limit(const std::filesystem::path& root,
                                    const std::string& proc_self_cgroup);

// min(affinity_cpus(), this process's cgroup CPU limit), at least 1.
int available_cpus();

}  // namespace torchship
