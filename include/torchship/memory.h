// Process-wide memory policy for inference: what a CLI, a server or an embedding application
// calls once, early in main(), before loading models.
#pragma once

namespace torchship {

// The process's C heap: glibc's, jemalloc (linked into the torchship program: a server that
// reloads models under traffic fragments glibc's; docs/serving.md, "Soak"), or another.
enum class Heap { glibc, jemalloc, other };
Heap process_heap();
const char* heap_name(Heap heap);

// Tunes the process for repeated inference (Linux with glibc; elsewhere it does nothing):
//  - freed tensor memory stays in the process until release_free_memory(), on glibc's heap and
//    on jemalloc's: otherwise each forward faults its activations in afresh (LR-ASPP at 320x480:
//    ~115 ms instead of ~30 ms on 2 cores with glibc, 4,500 page faults a forward with jemalloc);
//  - tensors of 1 MiB and more are backed by transparent huge pages where the kernel offers
//    them ("madvise" mode), so loading weights and touching fresh activations faults 512x fewer
//    pages (a one-image ResNet34 classify: 1.5 s -> 1.0 s here, mostly in weight loading).
// Installs a CPU allocator for libtorch; call it before any tensor is created. Idempotent.
void tune_memory_for_inference();

// Gives the C heap's free memory back to the system (glibc's malloc_trim, jemalloc's purge of
// every arena; elsewhere nothing). A thread's heap keeps what it once held: a server calls this
// after a request that took memory beyond its size (a decoded upload), so that decodes spread over
// many threads do not each keep their peak.
void release_free_memory();

}  // namespace torchship
