// Bytes given a file name without being written to disk, for loaders that take only a path
// (libtorch's zip reader, AOTInductor's package loader): on Linux an anonymous in-memory file
// (memfd) named /proc/self/fd/N; elsewhere a temporary file, removed when the last copy of the
// MemoryFile goes.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace torchship {

class MemoryFile {
 public:
  // Throws Error(Internal) when neither an in-memory nor a temporary file can hold the bytes.
  // `executable`: code will be mapped from it (a compiled library given to dlopen), which a
  // kernel with vm.memfd_noexec refuses unless the file was made executable.
  static MemoryFile hold(std::string_view bytes, const std::string& name, bool executable = false);

  const std::filesystem::path& path() const { return state_->path; }

 private:
  struct State {
    std::filesystem::path path;
    int fd = -1;
    bool temporary = false;  // a file on disk to remove
    ~State();
  };
  std::shared_ptr<State> state_;
};

}  // namespace torchship
