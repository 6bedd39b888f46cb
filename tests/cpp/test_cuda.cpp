// CUDA: loaded on demand, and models run on a GPU where the machine has one.

#include <cstdlib>

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <gtest/gtest.h>

#include "fixtures.h"
#include "torchship/golden.h"
#include "torchship/model.h"
#include "torchship/runtime.h"
#include "torchship/torchship.h"
#include "torchship/value_tree.h"
#include "torchship/version.h"

namespace torchship {
namespace {

using testing::argmax_agrees;
using testing::close_by_rule;
using testing::fixture;
using testing::rule_atol;
using testing::trained;

TEST(CudaOnDemand, AskingLoadsLibtorchsCudaPartWhereItHasOne) {
  // torchship links libtorch's CPU library only; the first question about CUDA loads the CUDA
  // library of a CUDA build, whose start-up registers CUDA with libtorch (hasCUDART is true only
  // for the real CUDA hooks), with a GPU or without.
  bool available = cuda_available();
  EXPECT_EQ(at::detail::getCUDAHooks().hasCUDART(), libtorch_has_cuda());
  EXPECT_EQ(cuda_available(), available);
}

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_available()) {
      // TF32 convolutions and matmuls (on by default since Ampere) keep 10 mantissa bits:
      // fp32 golden vectors recorded on a CPU hold only with them off.
      at::globalContext().setAllowTF32CuDNN(false);
      at::globalContext().setAllowTF32CuBLAS(false);
      return;
    }
    const char* required = std::getenv("TORCHSHIP_REQUIRE_CUDA");
    if (required && std::string(required) == "1") FAIL() << "no CUDA device is visible";
    GTEST_SKIP() << "no CUDA device is visible (scripts/gpu-check.sh runs these on a GPU)";
  }

  static Model on(const std::string& device, const std::filesystem::path& archive) {
    return Model::load(archive, LoadOptions().with_device(device));
  }
};

TEST_F(Cuda, EveryArchiveReproducesItsCpuGoldenVectorsOnTheGpu) {
  for (std::string name : {"classifier.pt", "segmentation.pt", "detection.pt", "generic.pt"}) {
    Model model = on("cuda", fixture(name));
    EXPECT_TRUE(model.device().is_cuda()) << name;
    GoldenReport report = check_golden(model);
    for (const auto& golden_case : report.cases) {
      for (const auto& leaf : golden_case.leaves) {
        EXPECT_TRUE(leaf.ok) << name << " " << leaf.path << ": " << leaf.problem << ", max abs "
                             << leaf.max_abs << ", atol " << leaf.atol;
      }
    }
  }
}

TEST_F(Cuda, OneArchiveServesBothDevices) {
  // The article's traced classifier needed one archive per device (tracing froze the device of
  // tensors built inside); torchship's device-literal check refuses such exports, so the same
  // file runs on both.
  Model cpu_classifier = on("cpu", fixture("classifier.pt"));
  Model gpu_classifier = on("cuda", fixture("classifier.pt"));
  for (std::string name : {"chelsea", "random_0"}) {
    const Model& cpu = cpu_classifier;
    const Model& gpu = gpu_classifier;
    c10::IValue input = cpu.image_input(fixture(name + ".png"));
    at::Tensor expected = cpu.forward({input}).toTensor();
    at::Tensor actual = gpu.forward({input}).toTensor();
    EXPECT_TRUE(actual.is_cuda());
    EXPECT_TRUE(close_by_rule(expected, actual.cpu(), cpu.archive())) << name;
  }
  Model cpu = on("cpu", fixture("segmentation.pt"));
  Model gpu = on("cuda", fixture("segmentation.pt"));
  c10::impl::GenericList images(c10::TensorType::get());
  images.push_back(cpu.image_input(fixture("chelsea.png")));
  images.push_back(cpu.image_input(fixture("chelsea_flipped.png")));
  auto expected = cpu.forward({images}).toTupleRef().elements();
  auto actual = gpu.forward({images}).toTupleRef().elements();
  at::Tensor logits = expected[0].toTensor();
  EXPECT_TRUE(close_by_rule(logits, actual[0].toTensor().cpu(), cpu.archive()));
  EXPECT_TRUE(argmax_agrees(logits, expected[1].toTensor(), actual[1].toTensor().cpu(), 1,
                            rule_atol(logits, cpu.archive())));
}

TEST_F(Cuda, TrainedModelBatchesAgreeWithTheCpu) {
  for (std::string stem : {"fashion_mnist", "fashion_mnist_bf16"}) {
    if (!testing::have_trained(stem + ".pt")) continue;  // no bf16 where the CPU has no kernel
    Model cpu = on("cpu", trained(stem + ".pt"));
    Model gpu = on("cuda", trained(stem + ".pt"));
    std::vector<at::Tensor> images;
    for (int i = 0; i < 256; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "fashion_mnist_test/%05d.png", i);
      images.push_back(cpu.image_input(trained(name)).toTensor());
    }
    at::Tensor batch = at::cat(images, 0);
    at::Tensor expected = cpu.forward({batch}).toTensor();
    at::Tensor actual = gpu.forward({batch}).toTensor().cpu();
    EXPECT_TRUE(close_by_rule(expected, actual, cpu.archive())) << stem;
    EXPECT_TRUE(argmax_agrees(expected, expected.argmax(1), actual.argmax(1), 1,
                              rule_atol(expected, cpu.archive())))
        << stem;
  }
}

}  // namespace
}  // namespace torchship
