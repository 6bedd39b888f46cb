// What differs between the libtorch versions torchship builds against (Debian's 1.13, PyPI's
// 2.x), in one place: the rest of src/ is written once, against what every version has.
#pragma once

#include <cstddef>
#include <string>

#include <c10/core/Allocator.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#define TORCHSHIP_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||            \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// The AOTInductor package loader (libtorch >= 2.6 built with it): the AOTInductor backend and
// what the build reports (version.h) depend on it.
#if TORCHSHIP_TORCH_AT_LEAST(2, 6) && \
    __has_include(<torch/csrc/inductor/aoti_package/model_package_loader.h>)
#define TORCHSHIP_HAVE_AOTI 1
#endif

namespace torchship::compat {

// "1.13.0", "2.14.1": the libtorch this torchship was compiled against.
inline std::string libtorch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

// A libtorch warning handler that sees each warning's message. 2.0 hands handlers one
// c10::Warning, 1.13 its parts.
class WarningSink : public c10::WarningHandler {
 public:
  virtual void on_warning(const std::string& message) = 0;
#if TORCHSHIP_TORCH_AT_LEAST(2, 0)
  void process(const c10::Warning& warning) override {
    on_warning(warning.msg());
  }
#else
  void process(const c10::SourceLocation&, const std::string& message, const bool) override {
    on_warning(message);
  }
#endif
};

class DiscardWarnings : public WarningSink {
 public:
  void on_warning(const std::string&) override {}
};

// Installs a warning handler for the current scope, or for good (both moved to
// c10::WarningUtils in 2.0).
#if TORCHSHIP_TORCH_AT_LEAST(2, 0)
using WarningHandlerGuard = c10::WarningUtils::WarningHandlerGuard;
inline void set_warning_handler(c10::WarningHandler* handler) {
  c10::WarningUtils::set_warning_handler(handler);
}
#else
using WarningHandlerGuard = c10::Warning::WarningHandlerGuard;
inline void set_warning_handler(c10::WarningHandler* handler) {
  c10::Warning::set_warning_handler(handler);
}
#endif

// A CPU allocator. c10::Allocator::allocate lost its `const` in 2.3, which also made copy_data
// pure virtual; subclasses implement allocate_block() and compile against either.
class CpuAllocator : public c10::Allocator {
 public:
  virtual c10::DataPtr allocate_block(std::size_t bytes) const = 0;

#if TORCHSHIP_TORCH_AT_LEAST(2, 3)
  c10::DataPtr allocate(std::size_t bytes) override {
    return allocate_block(bytes);
  }
  void copy_data(void* destination, const void* source, std::size_t count) const override {
    default_copy_data(destination, source, count);
  }
#else
  c10::DataPtr allocate(std::size_t bytes) const override {
    return allocate_block(bytes);
  }
#endif
};

}  // namespace torchship::compat
