// The platform: the CPUs this process may use.

#include <fstream>

#include <gtest/gtest.h>

#include "fixtures.h"
#include "platform/cpu_budget.h"
#include "platform/cpu_features.h"
#include "torchship/runtime.h"

namespace torchship {
namespace {

// A cgroup file system laid out under a temporary folder.
class CgroupTree {
 public:
  CgroupTree()
      : root_(std::filesystem::temp_directory_path() / ("cgroups-" + std::to_string(getpid()))) {
    std::filesystem::remove_all(root_);
  }
  ~CgroupTree() { std::filesystem::remove_all(root_); }
  void write(const std::string& file, const std::string& text) {
    auto path = root_ / file;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
};

TEST(CpuBudget, TheTightestQuotaOfTheCgroupAndItsAncestorsRoundedUp) {
  {
    CgroupTree v2;  // Kubernetes: a pod limited to 1.5 CPUs, its container unlimited
    v2.write("cpu.max", "max 100000\n");
    v2.write("kubepods/pod1/cpu.max", "150000 100000\n");
    v2.write("kubepods/pod1/c1/cpu.max", "max 100000\n");
    EXPECT_EQ(cgroup_cpu_limit(v2.root(), "0::/kubepods/pod1/c1\n"), 2);
    EXPECT_EQ(cgroup_cpu_limit(v2.root(), "0::/\n"), std::nullopt);
    v2.write("cpu.max", "50000 100000\n");  // a quota under one CPU still gets one thread
    EXPECT_EQ(cgroup_cpu_limit(v2.root(), "0::/kubepods/pod1/c1\n"), 1);
  }
  {
    CgroupTree v1;  // docker --cpus 3 on cgroup v1, seen from inside (its cgroup at the root)
    v1.write("cpu,cpuacct/cpu.cfs_quota_us", "300000\n");
    v1.write("cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    EXPECT_EQ(cgroup_cpu_limit(v1.root(), "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"), 3);
    v1.write("cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    EXPECT_EQ(cgroup_cpu_limit(v1.root(), "4:cpu,cpuacct:/docker/abc\n"), std::nullopt);
  }
  {
    CgroupTree hybrid;  // systemd's hybrid layout: v2 at unified/
    hybrid.write("unified/cgroup.controllers", "cpu\n");
    hybrid.write("unified/user.slice/cpu.max", "400000 100000\n");
    EXPECT_EQ(cgroup_cpu_limit(hybrid.root(), "0::/user.slice\n1:name=systemd:/user.slice\n"), 4);
    EXPECT_EQ(cgroup_cpu_limit(hybrid.root(), "garbage\n0::\n"), std::nullopt);
  }
  EXPECT_GE(available_cpus(), 1);
  EXPECT_LE(available_cpus(), affinity_cpus());
}

TEST(CpuBudget, TheDefaultThreadsAreTheCpusThisProcessMayUse) {
  const char* omp = std::getenv("OMP_NUM_THREADS");
  if (omp) GTEST_SKIP() << "OMP_NUM_THREADS is set";
  EXPECT_EQ(default_threads(), available_cpus());
  setenv("OMP_NUM_THREADS", "3", 1);
  EXPECT_EQ(default_threads(), 3);
  unsetenv("OMP_NUM_THREADS");
  configure_runtime(RuntimeOptions());
  EXPECT_EQ(intra_op_threads(), available_cpus());
}

TEST(Backends, CpuFeaturesAgreeWithTheCompiler) {
  bool known = false;
  EXPECT_EQ(cpu_has_feature("avx2", &known), static_cast<bool>(__builtin_cpu_supports("avx2")));
  EXPECT_TRUE(known);
  EXPECT_EQ(cpu_has_feature("fma"), static_cast<bool>(__builtin_cpu_supports("fma")));
  EXPECT_EQ(cpu_has_feature("avx512f"), static_cast<bool>(__builtin_cpu_supports("avx512f")));
  EXPECT_EQ(cpu_has_feature("avx512_vnni"),
            static_cast<bool>(__builtin_cpu_supports("avx512vnni")));
  EXPECT_FALSE(cpu_has_feature("warp_drive", &known));
  EXPECT_FALSE(known);
  EXPECT_TRUE(missing_cpu_features({"warp_drive"}).empty());  // unknown names are not missing
}

}  // namespace
}  // namespace torchship
