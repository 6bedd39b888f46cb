// jemalloc's settings, compiled into the torchship program with jemalloc itself
// (cmake/torchshipAllocator.cmake); jemalloc reads them at its start.
//
// No per-thread caches of freed blocks: a thread's cache goes back to the arenas only as that
// thread allocates again, and the server's threads that free a model version (HTTP, gRPC, the
// load thread) may stay idle after it: 50 new versions as weights updates grew RSS 6% with the
// caches, 1% without (tests/python/test_weights_update.py).
extern "C" {
const char* malloc_conf = "tcache:false";
}
