// Decoding a request (parsing its JSON, building its tensors, decoding its image) is where its
// memory grows past the size of its body: at most `count` requests decode at once, so that the
// server's peak memory is bounded by configuration, whatever the number of uploads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace torchship::serving {

class DecodeSlots {
 public:
  explicit DecodeSlots(int count) : free_(count < 1 ? 1 : count) {}

  // A slot held until destruction.
  class Held {
   public:
    explicit Held(DecodeSlots* slots) : slots_(slots) {}
    Held(Held&& other) noexcept : slots_(other.slots_) { other.slots_ = nullptr; }
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;
    Held& operator=(Held&&) = delete;
    ~Held() {
      if (slots_) slots_->release();
    }
    explicit operator bool() const { return slots_ != nullptr; }

   private:
    DecodeSlots* slots_;
  };

  // Waits for a free slot until `deadline`; an empty Held when none came free in time.
  Held acquire(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!freed_.wait_until(lock, deadline, [this] { return free_ > 0; })) return Held(nullptr);
    --free_;
    return Held(this);
  }

 private:
  void release() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++free_;
    }
    freed_.notify_one();
  }

  std::mutex mutex_;
  std::condition_variable freed_;
  int free_;
};

}  // namespace torchship::serving
