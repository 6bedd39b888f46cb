// The KServe v2 gRPC front of torchship serve (inference.GRPCInferenceService, with Triton's
// repository extension): every RPC translates its request into calls on the shared
// InferenceService; the core's statuses become gRPC codes here (docs/serving.md has the table).
#pragma once

#include <memory>
#include <string>

namespace torchship::serving {

class InferenceService;

class GrpcFront {
 public:
  explicit GrpcFront(InferenceService& service);
  ~GrpcFront();

  // Binds and starts serving on its own threads; returns the port. Throws Error when the
  // address is taken.
  int start(const std::string& host, int port);
  // Stops accepting calls and waits for the ones in flight (up to a grace period).
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace torchship::serving
