#include "serving/batcher.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "torchship/error.h"
#include "torchship/value_tree.h"

namespace torchship::serving {
namespace {

using Clock = std::chrono::steady_clock;

// Requests batch together when every input has the same dtype and the same sizes past dim 0.
bool same_item_shape(const std::vector<c10::IValue>& a, const std::vector<c10::IValue>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const at::Tensor& x = a[i].toTensor();
    const at::Tensor& y = b[i].toTensor();
    if (x.scalar_type() != y.scalar_type() || x.dim() != y.dim()) return false;
    if (x.sizes().slice(1) != y.sizes().slice(1)) return false;
  }
  return true;
}

// Rows [start, start + count) of every tensor in `value`, keeping its structure.
c10::IValue rows_of(const c10::IValue& value, int64_t start, int64_t count, int64_t total) {
  return map_leaves(value, [&](const c10::IValue& leaf) -> c10::IValue {
    if (!leaf.isTensor()) {
      throw bad_model("a batched forward returned " + describe(value) +
                      ", which cannot be split among the requests");
    }
    const at::Tensor& tensor = leaf.toTensor();
    if (tensor.dim() == 0 || tensor.size(0) != total) {
      throw bad_model("a batched forward returned " + describe(leaf) +
                      ", which has no first dimension of " + std::to_string(total) +
                      " rows to split among the requests");
    }
    return tensor.narrow(0, start, count).clone();
  });
}

}  // namespace

Batcher::Batcher(const Model& model, BatchPolicy policy, Metrics& metrics, std::string name,
                 std::string version)
    : model_(model),
      policy_(policy),
      metrics_(metrics),
      name_(std::move(name)),
      version_(std::move(version)) {
  for (int i = 0; i < std::max(1, policy_.instances); ++i)
    workers_.emplace_back([this] { work(); });
}

Batcher::~Batcher() {
  stop();
}

int64_t Batcher::items_of(const std::vector<c10::IValue>& inputs) const {
  if (!batching()) return 1;
  int64_t items = -1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const at::Tensor& tensor = inputs[i].toTensor();
    std::string where = "input '" + model_.inputs()[i].name + "'";
    if (tensor.dim() == 0) throw bad_input(where + ": expected a batch dimension, got a scalar");
    if (items >= 0 && tensor.size(0) != items) {
      throw bad_input(where + ": batch of " + std::to_string(tensor.size(0)) +
                      ", the other inputs have " + std::to_string(items));
    }
    items = tensor.size(0);
  }
  if (items < 1 || items > policy_.max_batch_size) {
    throw bad_input("a request carries 1 to " + std::to_string(policy_.max_batch_size) +
                    " items (max_batch_size), got " + std::to_string(items));
  }
  return items;
}

std::future<c10::IValue> Batcher::submit(std::vector<c10::IValue> inputs,
                                         Clock::time_point deadline) {
  Job job;
  job.items = items_of(inputs);
  job.inputs = std::move(inputs);
  job.enqueued = Clock::now();
  job.deadline = deadline;
  auto result = job.result.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw Unavailable("the server is shutting down");
    if (queue_.size() >= policy_.max_queue_size) {
      throw Unavailable("model '" + name_ + "' has " + std::to_string(queue_.size()) +
                        " requests waiting, the most its queue holds (max_queue_size); retry "
                        "later");
    }
    queue_.push_back(std::move(job));
    metrics_.queue_depth(name_, version_, queue_.size());
  }
  arrived_.notify_one();
  return result;
}

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  arrived_.notify_all();
  for (auto& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
  workers_.clear();
}

void Batcher::work() {
  // OpenMP's thread count is per calling thread: this instance's share, or the process's.
  // (at::set_num_threads also records the count for threads that have not run an operator
  // yet; every instance of a repository sets one of the same few values.)
  if (policy_.threads > 0) {
    at::set_num_threads(policy_.threads);
  } else {
    at::init_num_threads();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    arrived_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and nothing left to finish
    std::vector<Job> batch = take_batch(lock);
    metrics_.queue_depth(name_, version_, queue_.size());
    lock.unlock();
    run(batch);
    lock.lock();
  }
}

// Called with the lock held and the queue not empty; may wait (releasing the lock) for more
// requests to join the first one.
std::vector<Batcher::Job> Batcher::take_batch(std::unique_lock<std::mutex>& lock) {
  std::vector<Job> batch;
  batch.push_back(std::move(queue_.front()));
  queue_.pop_front();
  if (!batching()) return batch;
  int64_t items = batch[0].items;
  auto deadline = batch[0].enqueued + policy_.max_queue_delay;
  while (items < policy_.max_batch_size) {
    // Take every waiting request that fits, in arrival order.
    for (auto it = queue_.begin(); it != queue_.end() && items < policy_.max_batch_size;) {
      if (items + it->items <= policy_.max_batch_size &&
          same_item_shape(it->inputs, batch[0].inputs)) {
        items += it->items;
        batch.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    if (items >= policy_.max_batch_size || stopping_ || Clock::now() >= deadline) break;
    arrived_.wait_until(lock, deadline);
  }
  return batch;
}

void Batcher::run_alone(Job& job) {
  try {
    job.result.set_value(model_.forward(job.inputs));
  } catch (...) {
    job.result.set_exception(std::current_exception());
  }
}

void Batcher::run(std::vector<Job>& batch) {
  auto started = Clock::now();
  // Requests whose clients gave up waiting are answered without running.
  std::vector<Job> live;
  for (auto& job : batch) {
    if (started < job.deadline) {
      live.push_back(std::move(job));
    } else {
      job.result.set_exception(std::make_exception_ptr(DeadlineExceeded(
          "the request waited past its deadline in the queue of model '" + name_ + "'")));
    }
  }
  batch = std::move(live);
  if (batch.empty()) return;
  std::vector<double> waits;
  int64_t total = 0;
  for (const auto& job : batch) {
    waits.push_back(std::chrono::duration<double>(started - job.enqueued).count());
    total += job.items;
  }
  metrics_.execution(name_, version_, batch.size(), total, waits);
  if (batch.size() == 1) {
    run_alone(batch[0]);
    return;
  }
  c10::IValue output;
  try {
    std::vector<c10::IValue> inputs;
    for (size_t i = 0; i < batch[0].inputs.size(); ++i) {
      std::vector<at::Tensor> parts;
      for (const auto& job : batch) parts.push_back(job.inputs[i].toTensor());
      inputs.emplace_back(at::cat(parts, 0));
    }
    output = model_.forward(std::move(inputs));
  } catch (...) {
    // One request may have broken the batch: run each alone, so only it gets the error.
    for (auto& job : batch) run_alone(job);
    return;
  }
  int64_t start = 0;
  for (auto& job : batch) {
    try {
      job.result.set_value(rows_of(output, start, job.items, total));
    } catch (...) {
      job.result.set_exception(std::current_exception());
    }
    start += job.items;
  }
}

}  // namespace torchship::serving
