// cpp-httplib's server with a total deadline for each request's header and for its body.
// httplib alone bounds only the silence between two reads, so a client that sends one byte
// before each timeout holds a connection, and one of the HTTP threads, for as long as it likes.
// Here each connection is read through a stream of our own that knows which part of a request
// it is reading and until when; past that, the client gets 408 and the connection is closed.
#pragma once

#include <httplib.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "serving/status.h"

namespace torchship::serving {

struct RequestDeadlines {
  // From the request line's first byte to the blank line that ends the header.
  std::chrono::milliseconds header{30000};
  // From the end of the header to the body's last byte.
  std::chrono::milliseconds body{120000};
};

// Why a connection was closed before its request was read: "header", "body" or "silence",
// and the one-line explanation the client got with its 408.
struct ReadTimeout {
  const char* part;
  std::string message;
  std::string client;  // "address:port"
};

// What the pre-routing handler found about a request before its body was read. It stays with
// the request, on its connection's thread, until the route (or the error handler) answers; the
// next request on the connection starts with none.
struct Screening {
  std::optional<Outcome> refusal;  // answered by the route once the body is read
  std::string body_encoding;       // a compressed body's Content-Encoding, inflated by the route
};

class DeadlineServer : public httplib::Server {
 public:
  using OnTimeout = std::function<void(const ReadTimeout&)>;
  DeadlineServer(RequestDeadlines deadlines, OnTimeout on_timeout);

  // Called by the pre-routing handler, on the thread reading the request: its header is in, the
  // body's deadline starts now.
  static void header_read();
  // On the thread writing the answer: why reading the request stopped early, "" when it did
  // not (httplib then answers 400 through the error handler, which should say 408 and this).
  static std::string read_timeout_on_this_thread();
  // The screening of the request this thread serves (an empty one off a connection's thread).
  static Screening& screening_of_this_request();

  // httplib listens with a backlog of 5: 32 clients connecting at once overflow it and wait
  // for SYN retransmits (1 s, 3 s, ...). This raises it to the system's maximum.
  void widen_listen_backlog();

 private:
  bool process_and_close_socket(socket_t socket) override;

  RequestDeadlines deadlines_;
  OnTimeout on_timeout_;
};

}  // namespace torchship::serving
