// Custom-operator libraries (torchvision's ops, users' own): loaded once into the process so
// that archives calling their operators can be deserialized.
#include <cstdlib>
#include <mutex>
#include <set>

#include <ATen/Context.h>
#include <ATen/DynamicLibrary.h>

#include "platform/cuda_runtime.h"
#include "platform/library_stubs.h"
#include "torchship/error.h"

#if defined(__linux__)
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace torchship {
namespace fs = std::filesystem;

#if defined(TORCHSHIP_LIBRARY_STUBS)
namespace embedded {
extern const unsigned char torch_python_stub[];
extern const std::size_t torch_python_stub_size;
extern const unsigned char torch_stub[];
extern const std::size_t torch_stub_size;
}  // namespace embedded
#endif

namespace {

#if defined(__linux__)
// The folder libtorch was loaded from: a wheel's site-packages/torch/lib, Debian's
// /usr/lib/<triplet>, or a libtorch distribution's lib/.
std::optional<fs::path> libtorch_folder() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&at::globalContext), &info) == 0 || !info.dli_fname) {
    return std::nullopt;
  }
  std::error_code ec;
  fs::path library = fs::canonical(info.dli_fname, ec);
  return ec ? std::nullopt : std::optional<fs::path>(library.parent_path());
}
#else
std::optional<fs::path> libtorch_folder() {
  return std::nullopt;  // not looked up outside Linux: TORCHSHIP_TORCHVISION_OPS or --extension
}
#endif

#if defined(TORCHSHIP_LIBRARY_STUBS)
// Loads an empty library embedded in torchship under `soname`, unless a library of that name is
// in the process already: the dynamic loader then takes it for any library that lists the name
// as needed.
void load_stub(const char* soname, const unsigned char* bytes, std::size_t size) {
  if (void* loaded = dlopen(soname, RTLD_LAZY | RTLD_NOLOAD)) {
    dlclose(loaded);
    return;
  }
  int fd = memfd_create(soname, MFD_CLOEXEC);
  if (fd < 0) return;
  bool written = write(fd, bytes, size) == static_cast<ssize_t>(size);
  if (!written ||
      !dlopen(("/proc/self/fd/" + std::to_string(fd)).c_str(), RTLD_NOW | RTLD_GLOBAL)) {
    close(fd);
  }
  // The descriptor stays open: the loader knows a library by the path it was opened from, and a
  // second stub opened from a reused descriptor number would pass for the first.
}
#endif

// Extension modules built for Python (torchvision's wheel among them) list libtorch_python.so
// as needed. Outside Python the dynamic loader would find no such library, or another torch's
// (Debian's, for python3-torch), and fail on its Python symbols. torchvision's operators do not
// use it, so an empty library with that soname satisfies the loader; a library that does use it
// then fails with its missing symbol named. Skipped when Python's is already in the process.
void satisfy_torch_python_dependency() {
#if defined(TORCHSHIP_LIBRARY_STUBS)
  static std::once_flag once;
  std::call_once(once, [] {
    load_stub("libtorch_python.so", embedded::torch_python_stub, embedded::torch_python_stub_size);
  });
#endif
}

bool is_torchvision_ops(const fs::path& path) {
  // _C.so (Debian, older wheels), _C.cpython-311-x86_64-linux-gnu.so, _C_stable.so (0.29+)
  std::string name = path.filename().string();
  auto extension = path.extension();
  return (extension == ".so" || extension == ".pyd") &&
         (name.rfind("_C.", 0) == 0 || name.rfind("_C_stable.", 0) == 0);
}

std::optional<fs::path> ops_library_in(const fs::path& folder) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    if (is_torchvision_ops(entry.path())) return entry.path();
  }
  return std::nullopt;
}

}  // namespace

void satisfy_libtorch_dependency() {
#if defined(TORCHSHIP_LIBRARY_STUBS) && TORCHSHIP_LIBTORCH_CUDA
  static std::once_flag once;
  std::call_once(once,
                 [] { load_stub("libtorch.so", embedded::torch_stub, embedded::torch_stub_size); });
#endif
}

void load_extension(const fs::path& library) {
  static std::mutex mutex;
  static std::set<std::string> loaded;

  std::error_code ec;
  if (!fs::is_regular_file(library, ec)) {
    throw bad_input("cannot load extension library " + library.string() + ": no such file");
  }
  std::string key = fs::weakly_canonical(library, ec).string();
  std::lock_guard<std::mutex> lock(mutex);
  if (loaded.count(key)) return;
  satisfy_torch_python_dependency();
  satisfy_libtorch_dependency();
  // An extension built against a CUDA build of libtorch (torchvision's wheel) needs its CUDA
  // libraries in the process.
  load_cuda_library();
  try {
    // Operators register themselves from static initializers; the handle must never close.
    at::DynamicLibrary(key.c_str(), nullptr, /*leak_handle=*/true);
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    throw bad_model("cannot load extension library " + library.string() + ": " +
                    what.substr(0, what.find('\n')));
  }
  loaded.insert(key);
}

std::optional<fs::path> find_torchvision_ops() {
  if (const char* overridden = std::getenv("TORCHSHIP_TORCHVISION_OPS")) {
    // A path names the library; an empty value turns the automatic search off.
    if (*overridden == '\0') return std::nullopt;
    return fs::path(overridden);
  }
  // Only the torchvision built for the libtorch this process runs on: another torch's operator
  // library does not load, or crashes when it does.
  auto folder = libtorch_folder();
  if (!folder) return std::nullopt;
  std::error_code ec;
  // The C++ distribution of torchvision installs next to libtorch.
  if (fs::exists(*folder / "libtorchvision.so", ec)) return *folder / "libtorchvision.so";
  // A PyPI wheel: site-packages/torch/lib/libtorch_cpu.so and site-packages/torchvision/.
  if (folder->filename() == "lib" && folder->parent_path().filename() == "torch") {
    return ops_library_in(folder->parent_path().parent_path() / "torchvision");
  }
  // Debian: libtorch in /usr/lib/<triplet>, python3-torchvision in /usr/lib/python3.
  if (folder->parent_path() == "/usr/lib") {
    return ops_library_in("/usr/lib/python3/dist-packages/torchvision");
  }
  return std::nullopt;
}

}  // namespace torchship
