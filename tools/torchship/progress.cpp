#include "progress.h"

#include <cstdio>

#ifdef _WIN32
#include <io.h>
#define TORCHSHIP_ISATTY(fd) _isatty(fd)
#define TORCHSHIP_FILENO(f) _fileno(f)
#else
#include <unistd.h>
#define TORCHSHIP_ISATTY(fd) isatty(fd)
#define TORCHSHIP_FILENO(f) fileno(f)
#endif

namespace torchship::cli {

bool stderr_is_terminal() {
  return TORCHSHIP_ISATTY(TORCHSHIP_FILENO(stderr)) != 0;
}

Progress::Progress(std::string label, size_t total)
    : label_(std::move(label)),
      total_(total),
      enabled_(stderr_is_terminal() && total > 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_ - std::chrono::seconds(1)) {}

Progress::~Progress() {
  finish();
}

void Progress::update(size_t done) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  double seconds = std::chrono::duration<double>(now - start_).count();
  constexpr int kWidth = 30;
  int filled = static_cast<int>(kWidth * done / (total_ ? total_ : 1));
  std::fprintf(stderr, "\r%s [%s%s] %zu/%zu  %.1fs  %.0f/s ", label_.c_str(),
               std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(), done,
               total_, seconds, seconds > 0 ? done / seconds : 0.0);
  std::fflush(stderr);
}

void Progress::finish() {
  if (!enabled_) return;
  std::fprintf(stderr, "\r%s\r", std::string(label_.size() + 80, ' ').c_str());
  std::fflush(stderr);
  enabled_ = false;
}

}  // namespace torchship::cli
