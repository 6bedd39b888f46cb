// The serving core's own status vocabulary: what became of a request, in words no protocol
// owns. Each protocol translates it once: HTTP status (http_status.h, which the metrics' status
// label uses too), gRPC code (grpc/grpc_front.cpp). docs/serving.md has the table.
#pragma once

#include <stdexcept>
#include <string>

#include "torchship/error.h"

namespace torchship::serving {

enum class Status {
  Ok,
  InvalidArgument,      // a malformed request, an input that does not fit the model
  Unauthenticated,      // missing or wrong API key
  NotFound,             // no such model or version, or not loaded
  Conflict,             // a control request the control mode refuses
  PayloadTooLarge,      // a body beyond --max-body-bytes, inflated or not
  UnsupportedEncoding,  // a Content-Encoding torchship does not inflate
  Unimplemented,        // what this build or model cannot do
  Unavailable,          // queue full, shutting down: the client may retry elsewhere
  DeadlineExceeded,     // not answered within the request's deadline
  Internal,             // not the client's fault
};

// The one exception the serving core throws for a failure that has a status of its own
// (Error's kinds map by status_of()); the names below say where it comes from.
struct ServingError : std::runtime_error {
  ServingError(Status status, const std::string& message)
      : std::runtime_error(message), status(status) {}
  Status status;
};

// The queue is full or the server is stopping.
struct Unavailable : ServingError {
  explicit Unavailable(const std::string& message) : ServingError(Status::Unavailable, message) {}
};

// The request's deadline passed before its forward began: it was dropped from the queue.
struct DeadlineExceeded : ServingError {
  explicit DeadlineExceeded(const std::string& message)
      : ServingError(Status::DeadlineExceeded, message) {}
};

// A model the repository does not hold.
struct UnknownModel : ServingError {
  explicit UnknownModel(const std::string& message) : ServingError(Status::NotFound, message) {}
};

// A control request refused by the control mode.
struct ControlRefused : ServingError {
  explicit ControlRefused(const std::string& message) : ServingError(Status::Conflict, message) {}
};

// A body that is (or inflates to) more than the limit.
struct BodyTooLarge : ServingError {
  explicit BodyTooLarge(const std::string& message)
      : ServingError(Status::PayloadTooLarge, message) {}
};

// What a client hears about a request: a status and one printable line ("" when Ok).
struct Outcome {
  Status status = Status::Ok;
  std::string message;
};

// The status of the library's errors: bad input is the client's, unsupported is unimplemented,
// the rest are internal.
inline Status status_of(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::BadInput:
      return Status::InvalidArgument;
    case ErrorKind::Unsupported:
      return Status::Unimplemented;
    default:
      return Status::Internal;
  }
}

}  // namespace torchship::serving
