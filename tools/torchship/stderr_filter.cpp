#include "stderr_filter.h"

#include <cstdio>
#include <iostream>
#include <mutex>
#include <streambuf>
#include <string>

namespace torchship::cli {
namespace {

class LineFilter : public std::streambuf {
 protected:
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    char ch = traits_type::to_char_type(c);
    std::lock_guard<std::mutex> lock(mutex_);
    take(&ch, 1);
    return c;
  }

  std::streamsize xsputn(const char* text, std::streamsize count) override {
    std::lock_guard<std::mutex> lock(mutex_);
    take(text, static_cast<size_t>(count));
    return count;
  }

  // A flush writes a pending partial line, unless it may yet become a copy to drop.
  int sync() override {
    std::lock_guard<std::mutex> lock(mutex_);
    bool may_be_a_copy = line_.rfind("Error", 0) == 0 || std::string("Error").rfind(line_, 0) == 0;
    if (!line_.empty() && !may_be_a_copy) {
      std::fwrite(line_.data(), 1, line_.size(), stderr);
      line_.clear();
    }
    std::fflush(stderr);
    return 0;
  }

 private:
  void take(const char* text, size_t count) {
    for (size_t i = 0; i < count; ++i) {
      line_ += text[i];
      if (text[i] == '\n') finish_line();
    }
  }

  void finish_line() {
    bool compiled_error = line_.rfind("Error: ", 0) == 0 || line_.rfind("Error in op: ", 0) == 0;
    bool blank_after_one = line_ == "\n" && dropped_last_;
    dropped_last_ = compiled_error;
    if (!compiled_error && !blank_after_one) std::fwrite(line_.data(), 1, line_.size(), stderr);
    line_.clear();
  }

  std::mutex mutex_;
  std::string line_;
  bool dropped_last_ = false;
};

}  // namespace

void drop_compiled_code_error_copies() {
  // Never destroyed: std::cerr may be written and flushed until the process has exited.
  static auto* filter = new LineFilter;
  std::cerr.rdbuf(filter);
}

}  // namespace torchship::cli
