// One exception family for everything torchship reports to its callers.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace torchship {

// What went wrong, coarse enough for a front end to map onto an exit code or an HTTP status.
enum class ErrorKind {
  BadInput,     // the caller's data does not fit: wrong file, dtype, shape, count
  BadModel,     // the archive is missing, corrupt, or not TorchScript
  Unsupported,  // a valid request this build cannot serve (e.g. CUDA on a CPU-only libtorch)
  Internal,     // a bug or an unexpected failure inside torchship or libtorch
};

const char* to_string(ErrorKind kind) noexcept;

// `text` safe to print on one line of a terminal, a log or a JSON string: control bytes (NUL and
// newlines included) and bytes that are not valid UTF-8 become \xNN escapes, a backslash stays
// itself; beyond `max_bytes` of input the rest is summarized ("... (N more bytes)"). Messages
// quote names, headers and file contents that come from outside.
std::string printable(std::string_view text, size_t max_bytes = 4096);

// The first non-blank line of an exception's text, without libtorch's backtrace: what a one-line
// message quotes of a library failure.
std::string first_line(const std::exception& error);

// Messages are made printable on construction: what() is a C string, so a NUL inside a quoted
// name would otherwise cut the message short there.
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message)
      : std::runtime_error(printable(message)), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

inline Error bad_input(const std::string& message) {
  return Error(ErrorKind::BadInput, message);
}
inline Error bad_model(const std::string& message) {
  return Error(ErrorKind::BadModel, message);
}
inline Error unsupported(const std::string& message) {
  return Error(ErrorKind::Unsupported, message);
}
inline Error internal_error(const std::string& message) {
  return Error(ErrorKind::Internal, message);
}

}  // namespace torchship
