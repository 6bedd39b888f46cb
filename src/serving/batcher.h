// Dynamic batching: requests for one model version wait in a bounded queue; a worker takes the
// first, adds the ones that can join it (same item shape, up to max_batch_size items, arriving
// within max_queue_delay_us), runs them as one forward and hands each request its own rows.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "serving/metrics.h"
#include "serving/status.h"
#include "torchship/model.h"

namespace torchship::serving {

struct BatchPolicy {
  int64_t max_batch_size = 0;  // items per forward; 0: no batching, one request per forward
  std::chrono::microseconds max_queue_delay{500};
  size_t max_queue_size = 256;
  int instances = 1;
  int threads = 0;  // intra-op threads of each instance's forwards; 0: the process's
};

class Batcher {
 public:
  Batcher(const Model& model, BatchPolicy policy, Metrics& metrics, std::string name,
          std::string version);
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Queues one request. Inputs must already fit the model (Model::check_inputs); with
  // batching, every input is a tensor whose first dimension is the request's item count, 1 to
  // max_batch_size (Error(BadInput) otherwise). Throws Unavailable when the queue is full or
  // the batcher is stopping.
  // A request still queued at `deadline` is dropped (its future throws DeadlineExceeded), so that
  // the queue moves on to requests whose clients still wait.
  std::future<c10::IValue> submit(std::vector<c10::IValue> inputs,
                                  std::chrono::steady_clock::time_point deadline =
                                      std::chrono::steady_clock::time_point::max());

  // Finishes the queued requests, then stops the workers.
  void stop();

  bool batching() const { return policy_.max_batch_size > 0; }
  const BatchPolicy& policy() const { return policy_; }

 private:
  struct Job {
    std::vector<c10::IValue> inputs;
    int64_t items = 1;
    std::promise<c10::IValue> result;
    std::chrono::steady_clock::time_point enqueued;
    std::chrono::steady_clock::time_point deadline;
  };

  int64_t items_of(const std::vector<c10::IValue>& inputs) const;
  void work();
  std::vector<Job> take_batch(std::unique_lock<std::mutex>& lock);
  void run(std::vector<Job>& batch);
  void run_alone(Job& job);

  const Model& model_;
  BatchPolicy policy_;
  Metrics& metrics_;
  std::string name_, version_;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace torchship::serving
