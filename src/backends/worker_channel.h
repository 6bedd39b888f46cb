// One connection between torchship and a package worker process (package_worker.h): a Unix
// stream socket that carries frames, each a kind and a length-prefixed payload. A request and its
// answer use one channel at a time; a worker has one channel per concurrent forward.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>

namespace torchship::backends {

enum class FrameKind : uint32_t {
  Archive = 1,  // to the worker: the package's name, then its bytes
  Ready = 2,    // from the worker: the package opened (JSON: call spec, summary)
  Run = 3,      // to the worker: a compiled model's index and its flat inputs
  Outputs = 4,  // from the worker: the flat outputs
  Failure = 5,  // from the worker: what failed (JSON: kind, message)
};

struct Frame {
  FrameKind kind{};
  std::string payload;
};

class WorkerChannel {
 public:
  explicit WorkerChannel(int fd) : fd_(fd) {}  // takes the descriptor
  ~WorkerChannel();
  WorkerChannel(const WorkerChannel&) = delete;
  WorkerChannel& operator=(const WorkerChannel&) = delete;

  // Throw ChannelClosed when the other end is gone (never SIGPIPE).
  void send(FrameKind kind, std::string_view payload);
  // A frame of at most `max_payload` bytes; a longer one is Error(Internal).
  Frame receive(uint64_t max_payload);
  // Ends the connection both ways: the other end reads its end, a blocked receive returns.
  void shut_down();

 private:
  int fd_;
};

// The other end of a channel closed (its process ended, or closed it).
struct ChannelClosed : std::runtime_error {
  ChannelClosed() : std::runtime_error("the channel to the worker process closed") {}
};

// Tensors as a payload: the compiled model's index (-1: the dynamic one), then each tensor's
// dtype, sizes and bytes (contiguous).
std::string encode_tensors(int model, const std::vector<at::Tensor>& tensors);
// Error(Internal) for a payload that does not hold what encode_tensors writes.
std::vector<at::Tensor> decode_tensors(std::string_view payload, int& model);

}  // namespace torchship::backends
