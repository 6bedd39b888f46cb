#pragma once
// The one thread a repository loads models on. Loading runs libtorch's parallel work, which
// leaves per-thread state behind in the thread that ran it (OpenMP's pool of helper threads,
// allocator caches, the runtimes' thread-local caches) for as long as that thread lives: run on
// whichever request thread asked, a server's threads and memory grew with each of its
// --http-threads that ever loaded a model (measured, TorchScript reloads over HTTP with 64
// request threads: 225 -> 259 MB and 0.7 threads more per reload over 80 reloads; flat on one).

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

namespace torchship::serving {

class LoadThread {
 public:
  LoadThread();
  ~LoadThread();  // after the work queued
  LoadThread(const LoadThread&) = delete;
  LoadThread& operator=(const LoadThread&) = delete;

  // Runs `work` on the load thread and waits for it; rethrows what it threw.
  void run(std::function<void()> work);

 private:
  void serve();

  std::mutex mutex_;
  std::condition_variable queued_;
  std::deque<std::packaged_task<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the rest is ready
};

}  // namespace torchship::serving
