#include "backends/worker_channel.h"

#ifndef _WIN32  // package workers are POSIX processes (package_worker.h)

#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include "torchship/error.h"
#include "torchship/limits.h"

namespace torchship::backends {

namespace {

struct FrameHeader {
  uint32_t kind;
  uint32_t reserved;
  uint64_t size;
};

void send_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t sent = ::send(fd, data, size, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) throw ChannelClosed();
    data += sent;
    size -= static_cast<size_t>(sent);
  }
}

void receive_all(int fd, char* data, size_t size) {
  while (size > 0) {
    ssize_t got = ::recv(fd, data, size, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) throw ChannelClosed();
    data += got;
    size -= static_cast<size_t>(got);
  }
}

// Reads the payload from front to back, refusing to read past its end.
class PayloadReader {
 public:
  explicit PayloadReader(std::string_view payload) : rest_(payload) {}

  template <typename T>
  T take() {
    T value;
    std::memcpy(&value, bytes(sizeof(T)), sizeof(T));
    return value;
  }
  const char* bytes(size_t count) {
    if (count > rest_.size()) {
      throw internal_error("a package worker's frame ends early: " + std::to_string(count) +
                           " bytes expected, " + std::to_string(rest_.size()) + " left");
    }
    const char* start = rest_.data();
    rest_.remove_prefix(count);
    return start;
  }
  bool done() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

template <typename T>
void append(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

}  // namespace

WorkerChannel::~WorkerChannel() {
  if (fd_ >= 0) ::close(fd_);
}

void WorkerChannel::send(FrameKind kind, std::string_view payload) {
  FrameHeader header{static_cast<uint32_t>(kind), 0, payload.size()};
  send_all(fd_, reinterpret_cast<const char*>(&header), sizeof(header));
  send_all(fd_, payload.data(), payload.size());
}

Frame WorkerChannel::receive(uint64_t max_payload) {
  FrameHeader header{};
  receive_all(fd_, reinterpret_cast<char*>(&header), sizeof(header));
  if (header.kind < 1 || header.kind > 5 || header.size > max_payload) {
    throw internal_error("a package worker's frame is malformed: kind " +
                         std::to_string(header.kind) + ", " + std::to_string(header.size) +
                         " bytes (at most " + std::to_string(max_payload) + ")");
  }
  Frame frame{static_cast<FrameKind>(header.kind), std::string(header.size, '\0')};
  receive_all(fd_, frame.payload.data(), frame.payload.size());
  return frame;
}

void WorkerChannel::shut_down() {
  ::shutdown(fd_, SHUT_RDWR);
}

std::string encode_tensors(int model, const std::vector<at::Tensor>& tensors) {
  std::string out;
  append<int32_t>(out, model);
  append<uint32_t>(out, static_cast<uint32_t>(tensors.size()));
  for (const auto& given : tensors) {
    at::Tensor tensor = given.is_cpu() ? given.contiguous() : given.cpu().contiguous();
    append<int8_t>(out, static_cast<int8_t>(tensor.scalar_type()));
    append<uint8_t>(out, static_cast<uint8_t>(tensor.dim()));
    for (int64_t size : tensor.sizes()) append<int64_t>(out, size);
    append<uint64_t>(out, tensor.nbytes());
    out.append(static_cast<const char*>(tensor.data_ptr()), tensor.nbytes());
  }
  return out;
}

std::vector<at::Tensor> decode_tensors(std::string_view payload, int& model) {
  PayloadReader reader(payload);
  model = reader.take<int32_t>();
  auto count = reader.take<uint32_t>();
  std::vector<at::Tensor> tensors;
  for (uint32_t i = 0; i < count; ++i) {
    auto type = static_cast<c10::ScalarType>(reader.take<int8_t>());
    auto rank = reader.take<uint8_t>();
    bool known = static_cast<int>(type) >= 0 && type < c10::ScalarType::Undefined;
    if (rank > kMaxTensorRank || !known) {
      throw internal_error("a package worker's tensor is malformed");
    }
    std::vector<int64_t> sizes(rank);
    for (auto& size : sizes) size = reader.take<int64_t>();
    uint64_t numel = 1, expected = 0;
    for (int64_t size : sizes) {
      if (size < 0 || __builtin_mul_overflow(numel, static_cast<uint64_t>(size), &numel)) {
        throw internal_error("a package worker's tensor has sizes out of range");
      }
    }
    auto bytes = reader.take<uint64_t>();
    if (__builtin_mul_overflow(numel, c10::elementSize(type), &expected) || bytes != expected) {
      throw internal_error("a package worker's tensor holds " + std::to_string(bytes) +
                           " bytes, not its sizes'");
    }
    const char* data = reader.bytes(bytes);  // before allocating: the payload holds them
    at::Tensor tensor = at::empty(sizes, at::TensorOptions().dtype(type));
    if (bytes > 0) std::memcpy(tensor.data_ptr(), data, bytes);
    tensors.push_back(std::move(tensor));
  }
  if (!reader.done()) throw internal_error("a package worker's frame has bytes after its tensors");
  return tensors;
}

}  // namespace torchship::backends

#endif
