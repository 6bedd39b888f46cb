#include "torchship/error.h"

namespace torchship {

const char* to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::BadInput:
      return "bad input";
    case ErrorKind::BadModel:
      return "bad model";
    case ErrorKind::Unsupported:
      return "unsupported";
    case ErrorKind::Internal:
      return "internal error";
  }
  return "internal error";
}

}  // namespace torchship
