#include "platform/cpu_budget.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace torchship {
namespace {

std::optional<std::string> read_text(const std::filesystem::path& path) {
  std::ifstream file(path);
  if (!file) return std::nullopt;
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// CPUs a quota of `quota` per `period` (both in microseconds) amounts to; nullopt for none.
std::optional<int> cpus_of(double quota, double period) {
  if (quota <= 0 || period <= 0) return std::nullopt;  // v1 writes -1 for "no limit"
  return std::max(1, static_cast<int>(std::ceil(quota / period - 1e-9)));
}

std::optional<int> v2_limit(const std::filesystem::path& directory) {
  auto text = read_text(directory / "cpu.max");
  if (!text) return std::nullopt;
  std::istringstream fields(*text);
  std::string quota;
  double period = 0;
  if (!(fields >> quota >> period) || quota == "max") return std::nullopt;
  try {
    return cpus_of(std::stod(quota), period);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<int> v1_limit(const std::filesystem::path& directory) {
  auto quota = read_text(directory / "cpu.cfs_quota_us");
  auto period = read_text(directory / "cpu.cfs_period_us");
  if (!quota || !period) return std::nullopt;
  try {
    return cpus_of(std::stod(*quota), std::stod(*period));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// The tightest limit on `relative` (a cgroup path such as "/kubepods/pod1") and its ancestors,
// under `mount`. Inside a container the process's cgroup is often the mount's root itself.
std::optional<int> tightest(const std::filesystem::path& mount, std::string relative,
                            std::optional<int> (*limit_of)(const std::filesystem::path&)) {
  std::optional<int> tightest;
  while (true) {
    auto directory = mount / std::filesystem::path(relative).relative_path();
    if (auto limit = limit_of(directory)) tightest = std::min(tightest.value_or(*limit), *limit);
    if (relative.empty() || relative == "/") break;
    auto slash = relative.find_last_of('/');
    relative = slash == std::string::npos || slash == 0 ? "/" : relative.substr(0, slash);
  }
  return tightest;
}

}  // namespace

std::optional<int> cgroup_cpu_limit(const std::filesystem::path& root,
                                    const std::string& proc_self_cgroup) {
  std::optional<int> result;
  auto keep = [&](std::optional<int> limit) {
    if (limit) result = std::min(result.value_or(*limit), *limit);
  };
  std::istringstream lines(proc_self_cgroup);
  std::string line;
  // "0::/user.slice/..." (v2) or "4:cpu,cpuacct:/docker/abc" (v1)
  while (std::getline(lines, line)) {
    auto first = line.find(':');
    auto second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    std::string controllers = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    if (controllers.empty()) {
      // Pure v2 mounts at the root; systemd's hybrid layout at root/unified.
      bool hybrid = std::filesystem::exists(root / "unified" / "cgroup.controllers");
      keep(tightest(hybrid ? root / "unified" : root, path, v2_limit));
      continue;
    }
    std::istringstream names(controllers);
    std::string name;
    while (std::getline(names, name, ',')) {
      if (name != "cpu") continue;
      // v1 mounts the cpu controller at cpu,cpuacct (with cpu and cpuacct as links to it).
      for (const char* directory : {"cpu,cpuacct", "cpu"}) {
        if (std::filesystem::exists(root / directory)) {
          keep(tightest(root / directory, path, v1_limit));
          break;
        }
      }
    }
  }
  return result;
}

int affinity_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

int available_cpus() {
  int cpus = affinity_cpus();
#if defined(__linux__)
  if (auto text = read_text("/proc/self/cgroup")) {
    if (auto limit = cgroup_cpu_limit("/sys/fs/cgroup", *text)) cpus = std::min(cpus, *limit);
  }
#endif
  return std::max(1, cpus);
}

}  // namespace torchship
