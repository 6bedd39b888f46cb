#include "archive/memory_file.h"

#include <cerrno>
#include <fstream>
#include <random>
#include <system_error>

#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "torchship/error.h"

namespace torchship {
namespace fs = std::filesystem;

MemoryFile::State::~State() {
#ifdef __linux__
  if (fd >= 0) close(fd);
#endif
  std::error_code ec;
  if (temporary) fs::remove(path, ec);
}

namespace {

#ifdef __linux__
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U  // Linux 6.3; glibc's headers may not name it yet
#endif

// An anonymous file holding the bytes; -1 where the kernel has no memfd.
int memory_fd(std::string_view bytes, const std::string& name, bool executable) {
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | (executable ? MFD_EXEC : 0U));
  if (fd < 0 && executable && errno == EINVAL) {
    fd = memfd_create(name.c_str(), MFD_CLOEXEC);  // a kernel before MFD_EXEC: all executable
  }
  if (fd < 0) return -1;
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t wrote = write(fd, bytes.data() + done, bytes.size() - done);
    if (wrote <= 0) {
      close(fd);
      return -1;
    }
    done += static_cast<size_t>(wrote);
  }
  return fd;
}
#endif

}  // namespace

MemoryFile MemoryFile::hold(std::string_view bytes, const std::string& name, bool executable) {
  MemoryFile file;
  file.state_ = std::make_shared<State>();
#ifdef __linux__
  int fd = memory_fd(bytes, name, executable);
  if (fd >= 0) {
    file.state_->fd = fd;
    file.state_->path = "/proc/self/fd/" + std::to_string(fd);
    return file;
  }
#endif
  std::error_code ec;
  fs::path folder = fs::temp_directory_path(ec);
  std::random_device random;
  fs::path path = folder / ("torchship-" + std::to_string(random()) + "-" + name);
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (ec || !out) {
    fs::remove(path, ec);
    throw internal_error("cannot hold " + name + " in memory or in a temporary file");
  }
  file.state_->path = path;
  file.state_->temporary = true;
  return file;
}

}  // namespace torchship
