// Custom-operator libraries (torchvision's ops, users' own): loaded once into the process so
// that archives calling their operators can be deserialized.
#include <cstdlib>
#include <mutex>
#include <set>

#include <ATen/DynamicLibrary.h>

#include "torchship/error.h"
#include "torchship/model.h"

namespace torchship {
namespace fs = std::filesystem;

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
  // Where python3-torchvision (Debian) and pip wheels put the operator library.
  std::vector<fs::path> folders = {"/usr/lib/python3/dist-packages/torchvision"};
  for (const char* prefix : {"/usr/local/lib", "/usr/lib"}) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(prefix, ec)) {
      std::string name = entry.path().filename().string();
      if (name.rfind("python3", 0) == 0) {
        folders.push_back(entry.path() / "dist-packages" / "torchvision");
        folders.push_back(entry.path() / "site-packages" / "torchvision");
      }
    }
  }
  for (const auto& folder : folders) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(folder, ec)) {
      std::string name = entry.path().filename().string();
      bool is_ops = name.rfind("_C.", 0) == 0 &&
                    (entry.path().extension() == ".so" || entry.path().extension() == ".pyd");
      if (is_ops) return entry.path();
    }
  }
  // The C++ distribution of torchvision installs a plain shared library.
  for (const char* candidate : {"/usr/local/lib/libtorchvision.so", "/usr/lib/libtorchvision.so"}) {
    std::error_code ec;
    if (fs::exists(candidate, ec)) return fs::path(candidate);
  }
  return std::nullopt;
}

}  // namespace torchship
