// The allocator behind tune_memory_for_inference(): CPU tensors come from the C heap, 64-byte
// aligned like libtorch's own allocator, and large ones from 2 MiB-aligned blocks marked for
// transparent huge pages.
#include "torchship/memory.h"

#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>

#include <c10/core/CPUAllocator.h>

#include "core/torch_compat.h"
#include "platform/tbb_binding.h"

#if defined(__linux__) && defined(__GLIBC__)
#include <dlfcn.h>
#include <malloc.h>
#include <sys/mman.h>
#define TORCHSHIP_HUGE_PAGES 1
#endif

namespace torchship {
namespace {

#if TORCHSHIP_HUGE_PAGES
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kLargeTensor = kHugePage;
constexpr size_t kAlignment = 64;  // what libtorch's vectorized kernels expect

// Marks the whole 2 MiB pages inside [block, block + bytes) for transparent huge pages.
// Rounding each tensor up to whole huge pages instead would waste up to 2 MiB per tensor
// (ResNet34's 2.4 MB convolutions would take 4 MB each). Advice only: the kernel may decline
// (THP "never"), and the memory works either way.
void advise_huge_pages(void* block, size_t bytes) {
  auto begin = reinterpret_cast<uintptr_t>(block);
  uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  uintptr_t last = (begin + bytes) & ~(kHugePage - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
}

void free_block(void* block) {
  std::free(block);
}

class HugePageAllocator final : public compat::CpuAllocator {
 public:
  c10::DataPtr allocate_block(size_t bytes) const override {
    void* block = nullptr;
    if (posix_memalign(&block, kAlignment, bytes == 0 ? 1 : bytes) != 0) throw std::bad_alloc();
    if (bytes >= kLargeTensor) advise_huge_pages(block, bytes);
    return {block, block, &free_block, c10::Device(c10::DeviceType::CPU)};
  }

  // oneDNN allocates through raw_allocate()/raw_deallocate(), which need this.
  c10::DeleterFnPtr raw_deleter() const override { return &free_block; }
};

using JemallocControl = int (*)(const char*, void*, size_t*, void*, size_t);

// jemalloc's mallctl where the process's heap is jemalloc (the torchship program exports it).
JemallocControl jemalloc_control() {
  static auto control = reinterpret_cast<JemallocControl>(dlsym(RTLD_DEFAULT, "mallctl"));
  return control;
}

// jemalloc gives freed pages back as they age, which under steady forwards means faulting the
// activations in again at every call (LR-ASPP at 320x480: 4,500 page faults a forward, none on
// tuned glibc). Kept instead, as on glibc, until release_free_memory(): the default for arenas
// to come and the setting of those there are (an index not in use refuses it).
void keep_freed_pages(JemallocControl control) {
  ssize_t never = -1;
  unsigned arenas = 0;
  size_t size = sizeof arenas;
  control("arenas.narenas", &arenas, &size, nullptr, 0);
  for (const char* decay : {"dirty_decay_ms", "muzzy_decay_ms"}) {
    control((std::string("arenas.") + decay).c_str(), nullptr, nullptr, &never, sizeof never);
    for (unsigned arena = 0; arena < arenas; ++arena) {
      auto name = "arena." + std::to_string(arena) + "." + decay;
      control(name.c_str(), nullptr, nullptr, &never, sizeof never);
    }
  }
}

Heap find_process_heap() {
  if (jemalloc_control() != nullptr) return Heap::jemalloc;
  // glibc's malloc is also exported as __libc_malloc: the same address unless replaced.
  void* malloc_in_use = dlsym(RTLD_DEFAULT, "malloc");
  return malloc_in_use == dlsym(RTLD_DEFAULT, "__libc_malloc") ? Heap::glibc : Heap::other;
}
#endif

}  // namespace

Heap process_heap() {
#if TORCHSHIP_HUGE_PAGES
  static const Heap heap = find_process_heap();
  return heap;
#else
  return Heap::other;
#endif
}

const char* heap_name(Heap heap) {
  switch (heap) {
    case Heap::glibc:
      return "glibc";
    case Heap::jemalloc:
      return "jemalloc";
    default:
      return "other";
  }
}

void platform::keep_tbb_from_deep_binding() {
#if TORCHSHIP_HUGE_PAGES
  static const bool done =
      process_heap() != Heap::glibc && setenv("TBB_ENABLE_SANITIZERS", "1", /*overwrite=*/0) == 0;
  (void)done;
#endif
}

void tune_memory_for_inference() {
#if TORCHSHIP_HUGE_PAGES
  static bool done = false;
  if (done) return;
  done = true;
  platform::keep_tbb_from_deep_binding();
  if (process_heap() == Heap::glibc) {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }
  if (auto control = jemalloc_control()) keep_freed_pages(control);
  static HugePageAllocator allocator;
  c10::SetCPUAllocator(&allocator, /*priority=*/1);
#endif
}

void release_free_memory() {
#if TORCHSHIP_HUGE_PAGES
  if (process_heap() == Heap::glibc) malloc_trim(0);
  if (auto control = jemalloc_control()) {
    // This thread's cache of freed small blocks first, where caches are on (the torchship
    // program turns them off: src/platform/jemalloc_settings.cpp): it goes back to the arenas
    // only as the thread allocates again (100 unload/load cycles of a .pt grew RSS 10% without
    // the flush, 2.7% with it).
    control("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
    // "arena.4096": every arena (MALLCTL_ARENAS_ALL), whose freed pages keep_freed_pages() has
    // them hold until now.
    control("arena.4096.purge", nullptr, nullptr, nullptr, 0);
  }
#endif
}

}  // namespace torchship
