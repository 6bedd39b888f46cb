#include "serving/http/deadline_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>

namespace torchship::serving {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// "address:port" of either end of a connected socket.
std::string endpoint(int socket, bool peer, std::string* ip = nullptr, int* port = nullptr) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  int found = peer ? getpeername(socket, reinterpret_cast<sockaddr*>(&address), &length)
                   : getsockname(socket, reinterpret_cast<sockaddr*>(&address), &length);
  if (found != 0) return "?";
  char text[INET6_ADDRSTRLEN] = "?";
  int number = 0;
  if (address.ss_family == AF_INET) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    number = ntohs(v4->sin_port);
  } else if (address.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    number = ntohs(v6->sin6_port);
  }
  if (ip) *ip = text;
  if (port) *port = number;
  return std::string(text) + ":" + std::to_string(number);
}

// Milliseconds until `until` for poll(), rounded up so that a wake-up is never early.
int poll_ms(Clock::time_point until) {
  auto left = std::chrono::ceil<milliseconds>(until - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1 << 30));
}

// One connection's socket as httplib reads and writes it. It lives as long as the connection
// (httplib's own lives for one request), so bytes of a pipelined next request that arrive with
// this one's are kept for it.
class DeadlineStream final : public httplib::Stream {
 public:
  DeadlineStream(int socket, const RequestDeadlines& deadlines, milliseconds silence,
                 milliseconds write_silence)
      : socket_(socket),
        deadlines_(deadlines),
        silence_(silence),
        write_silence_(write_silence),
        header_message_("the request header did not arrive within " +
                        std::to_string(deadlines.header.count()) +
                        " ms of its first byte (--header-timeout-ms)"),
        body_message_("the request body did not arrive within " +
                      std::to_string(deadlines.body.count()) +
                      " ms of the header (--body-timeout-ms)"),
        silence_message_("the client sent nothing for " + std::to_string(silence.count() / 1000) +
                         " s in the middle of a request (--timeout)") {}

  // Waits up to `idle` for the next request's first byte; false when none came, the client
  // left, or `stopping` turned true (checked every 100 ms, so a stop does not wait out idle
  // keep-alive connections).
  template <typename Stopping>
  bool wait_for_request(milliseconds idle, Stopping stopping) {
    if (begin_ < end_) return true;
    auto until = Clock::now() + idle;
    while (!stopping()) {
      auto slice = std::min(until, Clock::now() + milliseconds(100));
      int ready = wait(POLLIN, slice);
      if (ready > 0) return true;
      if (ready < 0 || Clock::now() >= until) return false;
    }
    return false;
  }

  void begin_request() {
    screening_ = Screening{};
    part_ = "header";
    deadline_ = Clock::now() + deadlines_.header;
    timeout_.reset();
    written_ = 0;
  }
  void begin_body() {
    part_ = "body";
    deadline_ = Clock::now() + deadlines_.body;
  }

  Screening& screening() { return screening_; }
  // Why reading stopped early, when it did.
  const std::optional<ReadTimeout>& timeout() const { return timeout_; }
  // Whether anything of an answer went out since the request began.
  bool answered() const { return written_ > 0; }
  std::string client() const { return endpoint(socket_, true); }

  bool is_readable() const override { return begin_ < end_ || poll_now(POLLIN); }
  bool is_writable() const override { return poll_now(POLLOUT); }

  ssize_t read(char* out, size_t size) override {
    if (begin_ == end_) {
      if (!readable_in_time()) return -1;
      // A large read goes straight to httplib's buffer; small ones (the header is read a byte
      // at a time) come from ours.
      if (size >= buffer_.size()) return receive(out, size);
      ssize_t received = receive(buffer_.data(), buffer_.size());
      if (received <= 0) return received;
      begin_ = 0;
      end_ = static_cast<size_t>(received);
    }
    size_t n = std::min(size, end_ - begin_);
    std::memcpy(out, buffer_.data() + begin_, n);
    begin_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* data, size_t size) override {
    if (wait(POLLOUT, Clock::now() + write_silence_) <= 0) return -1;
    ssize_t sent;
    do {
      sent = ::send(socket_, data, size, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent > 0) written_ += static_cast<size_t>(sent);
    return sent;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    endpoint(socket_, true, &ip, &port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    endpoint(socket_, false, &ip, &port);
  }
  socket_t socket() const override { return socket_; }

 private:
  // poll() for `events` until `until`: >0 ready, 0 not in time, <0 the socket failed.
  int wait(short events, Clock::time_point until) const {
    for (;;) {
      pollfd entry{socket_, events, 0};
      int ready = ::poll(&entry, 1, poll_ms(until));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0 && Clock::now() < until) continue;  // woke early
      return ready;
    }
  }
  bool poll_now(short events) const { return wait(events, Clock::now()) > 0; }

  // Waits for the next bytes until the request's deadline or the silence limit, whichever
  // comes first; on either, records why.
  bool readable_in_time() {
    auto silent_until = Clock::now() + silence_;
    bool deadline_first = part_ != nullptr && deadline_ < silent_until;
    int ready = wait(POLLIN, deadline_first ? deadline_ : silent_until);
    if (ready > 0) return true;
    if (ready == 0 && part_ != nullptr) {
      const char* part = deadline_first ? part_ : "silence";
      const std::string& message = !deadline_first                     ? silence_message_
                                   : std::strcmp(part_, "header") == 0 ? header_message_
                                                                       : body_message_;
      timeout_ = ReadTimeout{part, message, client()};
    }
    return false;
  }

  ssize_t receive(char* out, size_t size) {
    ssize_t received;
    do {
      received = ::recv(socket_, out, size, 0);
    } while (received < 0 && errno == EINTR);
    return received;
  }

  int socket_;
  RequestDeadlines deadlines_;
  milliseconds silence_, write_silence_;
  std::array<char, 16384> buffer_{};
  size_t begin_ = 0, end_ = 0;
  std::string header_message_, body_message_, silence_message_;
  const char* part_ = nullptr;  // "header" or "body" while a request is read
  Clock::time_point deadline_{};
  std::optional<ReadTimeout> timeout_;
  Screening screening_;
  size_t written_ = 0;
};

// The stream of the connection this thread serves (httplib serves a connection on one thread).
thread_local DeadlineStream* current_stream = nullptr;

// The answer to a request that ran out of time before httplib could answer it itself.
void send_408(int socket, const std::string& message) {
  std::string body = nlohmann::json{{"error", message}}.dump();
  std::string answer =
      "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  ::send(socket, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Closes after a 408 the way a client can read it: without this, a byte the client sends
// after we stop reading makes the kernel reset the connection, and the reset may overtake the
// answer. Bounded: at most 2 s and 64 kB more are read and dropped.
void close_lingering(int socket) {
  ::shutdown(socket, SHUT_WR);
  auto until = Clock::now() + milliseconds(2000);
  std::array<char, 4096> sink;
  for (size_t dropped = 0; dropped < 65536;) {
    pollfd entry{socket, POLLIN, 0};
    if (::poll(&entry, 1, poll_ms(until)) <= 0) break;
    ssize_t n = ::recv(socket, sink.data(), sink.size(), 0);
    if (n <= 0) break;
    dropped += static_cast<size_t>(n);
  }
  ::close(socket);
}

milliseconds duration_of(time_t seconds, time_t microseconds) {
  return milliseconds(seconds * 1000 + microseconds / 1000);
}

}  // namespace

DeadlineServer::DeadlineServer(RequestDeadlines deadlines, OnTimeout on_timeout)
    : deadlines_(deadlines), on_timeout_(std::move(on_timeout)) {}

void DeadlineServer::header_read() {
  if (current_stream) current_stream->begin_body();
}

std::string DeadlineServer::read_timeout_on_this_thread() {
  if (!current_stream || !current_stream->timeout()) return "";
  return current_stream->timeout()->message;
}

Screening& DeadlineServer::screening_of_this_request() {
  if (current_stream) return current_stream->screening();
  thread_local Screening none;
  none = Screening{};
  return none;
}

void DeadlineServer::widen_listen_backlog() {
  ::listen(svr_sock_, SOMAXCONN);
}

bool DeadlineServer::process_and_close_socket(socket_t socket) {
  DeadlineStream stream(socket, deadlines_, duration_of(read_timeout_sec_, read_timeout_usec_),
                        duration_of(write_timeout_sec_, write_timeout_usec_));
  current_stream = &stream;
  auto stopping = [this] { return svr_sock_ == INVALID_SOCKET; };
  bool served = false, timed_out = false;
  for (size_t left = keep_alive_max_count_; left > 0; --left) {
    if (!stream.wait_for_request(std::chrono::seconds(keep_alive_timeout_sec_), stopping)) break;
    stream.begin_request();
    bool close_after = left == 1 || stopping();
    bool client_closes = false;
    served = process_request(stream, close_after, client_closes, nullptr);
    if (const auto& timeout = stream.timeout()) {
      if (!stream.answered()) send_408(socket, timeout->message);
      if (on_timeout_) on_timeout_(*timeout);
      timed_out = true;
      break;
    }
    if (!served || client_closes) break;
  }
  current_stream = nullptr;
  if (timed_out) {
    close_lingering(socket);
  } else {
    ::shutdown(socket, SHUT_RDWR);
    ::close(socket);
  }
  return served;
}

}  // namespace torchship::serving
