#include "serving/http_status.h"

namespace torchship::serving {

int http_status(Status status) {
  switch (status) {
    case Status::Ok:
      return 200;
    case Status::InvalidArgument:
      return 400;
    case Status::Unauthenticated:
      return 401;
    case Status::NotFound:
      return 404;
    case Status::Conflict:
      return 409;
    case Status::PayloadTooLarge:
      return 413;
    case Status::UnsupportedEncoding:
      return 415;
    case Status::Unimplemented:
      return 501;
    case Status::Unavailable:
      return 503;
    case Status::DeadlineExceeded:
      return 504;
    case Status::Internal:
      return 500;
  }
  return 500;
}

}  // namespace torchship::serving
