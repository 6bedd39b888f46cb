// The KServe v2 HTTP/REST front of torchship serve (cpp-httplib): every route translates its
// request into calls on the shared InferenceService.
#pragma once

#include <memory>
#include <string>

namespace torchship::serving {

class InferenceService;

class HttpFront {
 public:
  explicit HttpFront(InferenceService& service);
  ~HttpFront();

  // Binds the listening socket and returns its port; throws Error when the address is taken.
  int bind(const std::string& host, int port);
  // Serves until stop(); requests in flight are answered before it returns.
  void serve();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace torchship::serving
