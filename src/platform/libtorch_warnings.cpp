#include "platform/libtorch_warnings.h"

#include <mutex>
#include <set>

#include "core/torch_compat.h"

namespace torchship {
namespace {

class Router : public compat::WarningSink {
 public:
  explicit Router(std::function<void(const std::string&)> sink) : sink_(std::move(sink)) {}

  void on_warning(const std::string& message) override {
    std::string line = message.substr(0, message.find('\n'));
    std::lock_guard<std::mutex> lock(mutex_);
    if (seen_.insert(line).second) sink_(line);
  }

 private:
  std::function<void(const std::string&)> sink_;
  std::mutex mutex_;
  std::set<std::string> seen_;
};

}  // namespace

void route_libtorch_warnings(std::function<void(const std::string&)> sink) {
  static Router* router = nullptr;  // never freed: libtorch keeps the pointer
  if (router) return;
  router = new Router(std::move(sink));
  compat::set_warning_handler(router);
}

}  // namespace torchship
