#include "platform/device.h"

#include <torch/cuda.h>

#include "platform/cuda_runtime.h"
#include "torchship/error.h"
#include "torchship/runtime.h"
#include "torchship/version.h"

namespace torchship {

c10::Device parse_device(const std::string& text) {
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(text);
  } catch (const c10::Error&) {
    throw bad_input("invalid device '" + text + "': expected cpu, cuda or cuda:N");
  }
  if (device.is_cpu()) return device;
  if (!device.is_cuda()) {
    throw unsupported("device '" + text + "' is not supported: expected cpu, cuda or cuda:N");
  }
  if (!cuda_available()) {
    std::string problem = cuda_library_problem();
    if (!problem.empty()) {
      throw unsupported("device '" + text +
                        "' requested, but libtorch's CUDA library did not load (" + problem +
                        "); use --device cpu");
    }
    throw unsupported("device '" + text + "' requested, but " +
                      (libtorch_has_cuda() ? std::string("no CUDA device is visible")
                                           : std::string("this libtorch was built without CUDA")) +
                      "; use --device cpu");
  }
  auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (device.has_index() && device.index() >= count) {
    throw unsupported("device '" + text + "' requested, but only " + std::to_string(count) +
                      " CUDA device(s) are visible");
  }
  return device;
}

}  // namespace torchship
