// TBB and a process heap other than glibc's.
#pragma once

namespace torchship::platform {

// TBB opens its topology library (tbbbind, over hwloc) with RTLD_DEEPBIND, which binds hwloc to
// glibc's malloc even where the process's heap is another (the torchship program's jemalloc):
// hwloc then frees with glibc what jemalloc allocated, and the process aborts. OpenVINO's TBB
// leaves RTLD_DEEPBIND out where TBB_ENABLE_SANITIZERS is set (made for AddressSanitizer, which
// replaces malloc the same way): set here where the heap is not glibc's. Called early by
// tune_memory_for_inference (setenv before other threads run) and again before OpenVINO's
// first model compiles, which loads tbbbind; the first call decides.
void keep_tbb_from_deep_binding();

}  // namespace torchship::platform
