#include "serving/load_thread.h"

namespace torchship::serving {

LoadThread::LoadThread() : thread_([this] { serve(); }) {}

LoadThread::~LoadThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  queued_.notify_one();
  thread_.join();
}

void LoadThread::run(std::function<void()> work) {
  if (std::this_thread::get_id() == thread_.get_id()) return work();  // (no waiting on itself)
  std::packaged_task<void()> task(std::move(work));
  std::future<void> done = task.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(task));
  }
  queued_.notify_one();
  done.get();
}

void LoadThread::serve() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    queued_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;
    std::packaged_task<void()> task = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    task();
    lock.lock();
  }
}

}  // namespace torchship::serving
