// The backend seam: packages opened by format, the AOTInductor backend's checks before it loads
// anything, the pytree specs that rebuild a package's structured I/O, and the one value-tree walk.
#include <fstream>

#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>

#include "backends/tree_spec.h"
#include "cpu_features.h"
#include "fixtures.h"
#include "torch_compat.h"
#include "torchship/model.h"
#include "torchship/value_tree.h"

namespace torchship::testing {
namespace {

namespace fs = std::filesystem;

// A .pt2-shaped zip: AOTInductor's metadata and, optionally, a manifest; no compiled library.
fs::path fake_package(const std::string& name, const std::string& metadata,
                      const std::string& manifest = "") {
  fs::path path = fs::temp_directory_path() / (name + ".pt2");
  caffe2::serialize::PyTorchStreamWriter writer(path.string());
  auto write = [&](const std::string& record, const std::string& data) {
    writer.writeRecord(record, data.data(), data.size());
  };
  write("archive_format", "pt2");
  write("data/aotinductor/model/abc.wrapper_metadata.json", metadata);
  if (!manifest.empty()) write("extra/torchship.json", manifest);
  writer.writeEndOfFile();
  return path;
}

const char* kCpuMetadata =
    R"({"AOTI_DEVICE_KEY": "cpu", "AOTI_PLATFORM": "linux", "AOTI_MACHINE": "x86_64",
        "AOTI_CPU_ISA": "avx2"})";

bool have_aoti() {
  return TORCHSHIP_TORCH_AT_LEAST(2, 6);
}

TEST(Backends, AnArchiveSaysWhichFormatItHolds) {
  EXPECT_EQ(Archive::open(fixture("classifier.pt")).format(), ModelFormat::TorchScript);
  fs::path package = fake_package("format", kCpuMetadata);
  Archive archive = Archive::open(package);
  EXPECT_EQ(archive.format(), ModelFormat::AOTInductor);
  EXPECT_STREQ(format_name(archive.format()), "AOTInductor");
  EXPECT_FALSE(archive.manifest());
}

TEST(Backends, APt2WithoutACompiledModelIsRefused) {
  fs::path path = fs::temp_directory_path() / "empty_package.pt2";
  {
    caffe2::serialize::PyTorchStreamWriter writer(path.string());
    writer.writeRecord("archive_format", "pt2", 3);
    writer.writeEndOfFile();
  }
  EXPECT_EQ(error_message([&] { Archive::open(path); }),
            "cannot load " + path.string() +
                ": this .pt2 package holds no AOTInductor model (no data/aotinductor/model/); "
                "torchship runs packages written by torchship.export(format=\"aoti\") or "
                "torch._inductor.aoti_compile_and_package");
}

TEST(Backends, ABuildWithoutAOTInductorSaysSoInOneLine) {
  if (have_aoti()) GTEST_SKIP() << "this libtorch has AOTInductor";
  fs::path package = fake_package("no_aoti", kCpuMetadata);
  EXPECT_EQ(error_message([&] { Model::load(package); }),
            "cannot load " + package.string() +
                ": it is an AOTInductor package (.pt2), and this torchship was built against "
                "libtorch " +
                compat::libtorch_version() +
                ", which has no AOTInductor runtime (2.6 or newer has); run it with a torchship "
                "built against PyTorch 2.x, or export the model as TorchScript");
}

TEST(Backends, APackageForInstructionsThisCpuLacksIsRefusedBeforeLoading) {
  if (!have_aoti()) GTEST_SKIP() << "this libtorch has no AOTInductor";
  bool known = false;
  if (cpu_has_feature("avx512_4fmaps", &known) || !known) GTEST_SKIP() << "a Xeon Phi?";
  fs::path package =
      fake_package("sigill", kCpuMetadata, R"({"format": "torchship", "format_version": 1,
      "export": {"format": "aoti", "cpu": {"target": "native", "vec_isa": "AVX512",
      "features": ["avx2", "avx512_4fmaps"]}}})");
  EXPECT_EQ(error_message([&] { Model::load(package); }),
            "cannot load " + package.string() +
                ": the package was compiled for a CPU with avx512_4fmaps (target native), which "
                "this CPU lacks; running it would crash (illegal instruction); export it again "
                "with cpu_target=\"x86-64-v3\" (AVX2) or \"x86-64-v2\" for older CPUs");
}

TEST(Backends, APlainPackageIsCheckedByItsVectorIsa) {
  // No manifest: the features come from AOTInductor's AOTI_CPU_ISA, which it writes upper case.
  if (!have_aoti()) GTEST_SKIP() << "this libtorch has no AOTInductor";
  if (cpu_has_feature("amx_tile")) GTEST_SKIP() << "this CPU has AMX";
  fs::path package = fake_package("amx", R"({"AOTI_DEVICE_KEY": "cpu", "AOTI_PLATFORM": "linux",
      "AOTI_MACHINE": "x86_64", "AOTI_CPU_ISA": "AVX512 AMX_TILE"})");
  std::string message = error_message([&] { Model::load(package); });
  EXPECT_NE(message.find(": the package was compiled for a CPU with amx_tile (target native), "
                         "which this CPU lacks"),
            std::string::npos)
      << message;
}

TEST(Backends, APackageForAnotherDeviceOrMachineIsRefusedBeforeLoading) {
  if (!have_aoti()) GTEST_SKIP() << "this libtorch has no AOTInductor";
  fs::path cuda = fake_package("cuda", R"({"AOTI_DEVICE_KEY": "cuda", "AOTI_PLATFORM": "linux",
      "AOTI_MACHINE": "x86_64", "AOTI_CPU_ISA": ""})");
  EXPECT_EQ(error_message([&] { Model::load(cuda); }),
            "cannot load " + cuda.string() +
                ": the package was compiled for cuda, not cpu; run it with --device cuda, or "
                "export it again on cpu");
  fs::path arm = fake_package("arm", R"({"AOTI_DEVICE_KEY": "cpu", "AOTI_PLATFORM": "linux",
      "AOTI_MACHINE": "aarch64", "AOTI_CPU_ISA": "neon"})");
  EXPECT_EQ(error_message([&] { Model::load(arm); }),
            "cannot load " + arm.string() +
                ": the package was compiled for linux/aarch64, this machine is linux/x86_64; "
                "export it on (or for) this one");
}

TEST(Backends, CpuFeaturesAgreeWithTheCompiler) {
  bool known = false;
  EXPECT_EQ(cpu_has_feature("avx2", &known), static_cast<bool>(__builtin_cpu_supports("avx2")));
  EXPECT_TRUE(known);
  EXPECT_EQ(cpu_has_feature("fma"), static_cast<bool>(__builtin_cpu_supports("fma")));
  EXPECT_EQ(cpu_has_feature("avx512f"), static_cast<bool>(__builtin_cpu_supports("avx512f")));
  EXPECT_EQ(cpu_has_feature("avx512_vnni"),
            static_cast<bool>(__builtin_cpu_supports("avx512vnni")));
  EXPECT_FALSE(cpu_has_feature("warp_drive", &known));
  EXPECT_FALSE(known);
  EXPECT_TRUE(missing_cpu_features({"warp_drive"}).empty());  // unknown names are not missing
}

TEST(Backends, TreeSpecsRebuildStructuredOutputs) {
  // torch.utils._pytree.treespec_dumps of {"a": t, "b": (t, [t, t])}
  auto spec = backends::parse_tree_spec(
      R"([1, {"type": "builtins.dict", "context": "[\"a\", \"b\"]", "children_spec": [
          {"type": null, "context": null, "children_spec": []},
          {"type": "builtins.tuple", "context": "null", "children_spec": [
            {"type": null, "context": null, "children_spec": []},
            {"type": "builtins.list", "context": "null", "children_spec": [
              {"type": null, "context": null, "children_spec": []},
              {"type": null, "context": null, "children_spec": []}]}]}]}])",
      "spec");
  EXPECT_EQ(spec.leaf_count(), 4u);
  EXPECT_EQ(spec.type()->annotation_str(), "Dict[str, Any]");
  std::vector<at::Tensor> leaves = {at::zeros({1}), at::ones({2}), at::full({3}, 2.0),
                                    at::full({4}, 3.0)};
  size_t next = 0;
  c10::IValue value = spec.unflatten(leaves, next);
  EXPECT_EQ(next, 4u);
  std::vector<std::string> paths;
  for (const auto& leaf : output_leaves(value, nullptr)) paths.push_back(leaf.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"a", "b[0]", "b[1][0]", "b[1][1]"}));

  std::vector<at::Tensor> flat;
  spec.flatten(value, "input 'x'", flat);
  ASSERT_EQ(flat.size(), 4u);
  EXPECT_TRUE(flat[3].equal(leaves[3]));

  auto dict = value.toGenericDict();
  auto tuple = dict.at("b").toTupleRef().elements().vec();
  c10::impl::GenericList shorter(c10::TensorType::get());
  shorter.push_back(at::zeros({3}));
  dict.insert_or_assign("b", c10::ivalue::Tuple::create({tuple[0], shorter}));
  EXPECT_EQ(error_message([&] { spec.flatten(dict, "input 'x'", flat); }),
            "input 'x'.b[1]: expected a list of 2 (the package was compiled for that structure), "
            "got list(1)");
}

TEST(Backends, TreeSpecsTorchshipCannotRebuildAreRefused) {
  EXPECT_EQ(error_message([] { backends::parse_tree_spec("[1, {}]", "m.pt2's output spec"); }),
            "m.pt2's output spec is not a structure torchship can rebuild: expected {type, "
            "context, children_spec}, got {}");
  EXPECT_EQ(error_message([] {
              backends::parse_tree_spec(
                  R"([1, {"type": "my.Point", "context": null, "children_spec": []}])", "spec");
            }),
            "spec is not a structure torchship can rebuild: the node type my.Point is not a "
            "tuple, list, dict or None");
}

TEST(ValueTree, OneWayToNameLeaves) {
  Manifest manifest;
  manifest.outputs = {TensorSpec{"logits"}, TensorSpec{"labels"}};
  auto names = [](const c10::IValue& value, const Manifest* m) {
    std::vector<std::string> paths;
    for (const auto& leaf : output_leaves(value, m)) paths.push_back(leaf.path);
    return paths;
  };
  auto pair = c10::ivalue::Tuple::create({at::zeros({1}), at::ones({2})});
  EXPECT_EQ(names(pair, &manifest), (std::vector<std::string>{"logits", "labels"}));
  EXPECT_EQ(names(pair, nullptr), (std::vector<std::string>{"output[0]", "output[1]"}));
  EXPECT_EQ(names(at::zeros({1}), &manifest), (std::vector<std::string>{"logits"}));
  EXPECT_EQ(names(at::zeros({1}), nullptr), (std::vector<std::string>{"output"}));
  EXPECT_EQ(file_name_of("output[0].boxes"), "output_0_boxes");
  // A named tuple's fields stand in for output[i], unless the manifest names the outputs.
  std::vector<std::string> fields = {"boxes", "scores"};
  std::vector<c10::TypePtr> types = {c10::TensorType::get(), c10::TensorType::get()};
  auto type = c10::TupleType::createNamed(c10::QualifiedName("Detections"), fields, types);
  auto detections =
      c10::ivalue::Tuple::createNamed({at::zeros({2, 4}), at::zeros({2})}, std::move(type));
  EXPECT_EQ(names(detections, nullptr), (std::vector<std::string>{"boxes", "scores"}));
  EXPECT_EQ(names(detections, &manifest), (std::vector<std::string>{"logits", "labels"}));
  EXPECT_EQ(file_name_of("a/b c"), "a_b_c");
}

TEST(ValueTree, MapLeavesKeepsTheStructure) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  dict.insert("boxes", at::ones({2, 4}));
  c10::impl::GenericList list(
      c10::DictType::create(c10::StringType::get(), c10::TensorType::get()));
  list.push_back(dict);
  c10::IValue doubled =
      map_leaves(list, [](const c10::IValue& leaf) { return c10::IValue(leaf.toTensor() * 2); });
  auto leaves = output_leaves(doubled, nullptr);
  ASSERT_EQ(leaves.size(), 1u);
  EXPECT_EQ(leaves[0].path, "output[0].boxes");
  EXPECT_TRUE(leaves[0].value.toTensor().equal(at::full({2, 4}, 2.0)));
}

}  // namespace
}  // namespace torchship::testing

#include <thread>

#include "backends/prepacked_convolutions.h"
#include "cpu_budget.h"
#include "torchship/example_inputs.h"
#include "torchship/golden.h"
#include "torchship/runtime.h"
#include "torchship/tensor_io.h"

namespace torchship {
namespace {

using testing::fixture;

bool has_note_starting(const Model& model, const std::string& prefix) {
  for (const auto& note : model.notes()) {
    if (note.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

TEST(PlainArchives, AreOptimizedOnlyAfterTheFirstInputsVerifyIt) {
  // torch.jit.save's archive: no golden vectors, no manifest, so nothing to verify an optimized
  // module on at load. The first forward runs the stored module, answers with its output and
  // checks the optimized candidate against it before switching. A named candidate is verified
  // but not timed, so whether it is kept does not depend on this machine's load.
  LoadOptions prepacked = LoadOptions().with_optimization("prepacked");
  Model model = Model::load(fixture("plain_conv.pt"), prepacked);
  EXPECT_FALSE(model.optimized());
  EXPECT_FALSE(has_note_starting(model, "optimized"));
  EXPECT_EQ(model.optimization().chosen, "");  // nothing decided before the first inputs
  at::Tensor input = read_npy(fixture("plain_conv_input.npy"));
  at::Tensor expected = read_npy(fixture("plain_conv_output.npy"));
  at::Tensor first = model.forward({input}).toTensor();
  // The first answer is the stored module's own: Python's numbers by the fp32 rule.
  EXPECT_TRUE(compare_tensors(expected, first, 1e-4).ok);
  if (backends::can_prepack_convolutions()) {
    EXPECT_TRUE(model.optimized());
    EXPECT_EQ(model.notes().back(),
              "optimized: frozen, 3 convolutions run on prepacked oneDNN weights (as asked, "
              "verified on the stored module's outputs on the first inputs)");
    OptimizationReport report = model.optimization();
    EXPECT_EQ(report.chosen, "prepacked");
    ASSERT_EQ(report.trials.size(), 1u);  // the one asked for, untimed
    EXPECT_EQ(report.stored_ms, 0);
    EXPECT_EQ(report.trials[0].forward_ms, 0);
  }
  at::Tensor later = model.forward({input}).toTensor();
  EXPECT_TRUE(later.is_contiguous());  // as the stored module returns it (oneDNN's is NHWC)
  GoldenLeaf leaf = compare_tensors(expected, later, 1e-4);
  EXPECT_TRUE(leaf.ok) << leaf.problem << " " << leaf.max_abs;

  // Forwards that arrive together: one verifies, the others wait for it, every answer holds.
  Model fresh = Model::load(fixture("plain_conv.pt"), LoadOptions().with_optimization("frozen"));
  std::vector<at::Tensor> answers(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < answers.size(); ++i) {
    threads.emplace_back([&, i] { answers[i] = fresh.forward({input}).toTensor(); });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& answer : answers) EXPECT_TRUE(compare_tensors(expected, answer, 1e-4).ok);
  EXPECT_TRUE(fresh.optimized());
  EXPECT_EQ(fresh.optimization().chosen, "frozen");

  // Without optimization nothing waits for the first forward.
  Model stored = Model::load(fixture("plain_conv.pt"), LoadOptions().with_optimize(false));
  stored.forward({input});
  EXPECT_FALSE(stored.optimized());
  Model also_stored =
      Model::load(fixture("plain_conv.pt"), LoadOptions().with_optimization("stored"));
  also_stored.forward({input});
  EXPECT_FALSE(also_stored.optimized());
  EXPECT_EQ(also_stored.optimization().chosen, "");
}

TEST(PlainArchives, TheOptimizationKeptIsTheFastestVerifiedOneOrNone) {
  // By default every candidate is verified and timed on the first inputs, and one is kept only
  // when it beats the module as stored: which one wins depends on the CPU and its load, the
  // rule does not.
  Model model = Model::load(fixture("plain_conv.pt"));
  at::Tensor input = read_npy(fixture("plain_conv_input.npy"));
  at::Tensor expected = read_npy(fixture("plain_conv_output.npy"));
  model.forward({input});
  OptimizationReport report = model.optimization();
  ASSERT_FALSE(report.chosen.empty());
  EXPECT_GT(report.stored_ms, 0);
  EXPECT_GT(report.seconds, 0);
  ASSERT_EQ(report.trials.size(), kOptimizationCandidates.size());
  const OptimizationTrial* chosen = nullptr;
  for (size_t i = 0; i < report.trials.size(); ++i) {
    const auto& trial = report.trials[i];
    EXPECT_EQ(trial.candidate, kOptimizationCandidates[i]);
    if (trial.candidate == report.chosen) chosen = &trial;
    // Each verified candidate was timed; a refused one was not.
    EXPECT_EQ(trial.applies && trial.miss.empty(), trial.forward_ms > 0) << trial.candidate;
  }
  if (report.chosen == "stored") {
    EXPECT_FALSE(model.optimized());
    for (const auto& trial : report.trials) {
      if (trial.forward_ms > 0) EXPECT_GE(trial.forward_ms, 0.97 * report.stored_ms);
    }
    EXPECT_TRUE(has_note_starting(model, "not optimized: the module as stored is the fastest ("));
  } else {
    ASSERT_NE(chosen, nullptr) << report.chosen;
    EXPECT_TRUE(model.optimized());
    EXPECT_LT(chosen->forward_ms, 0.97 * report.stored_ms);
    for (const auto& trial : report.trials) {
      if (trial.forward_ms > 0) EXPECT_LE(chosen->forward_ms, trial.forward_ms);
    }
    EXPECT_TRUE(has_note_starting(model, "optimized: frozen"));
  }
  // Whatever was kept computes Python's numbers.
  EXPECT_TRUE(compare_tensors(expected, model.forward({input}).toTensor(), 1e-4).ok);

  try {
    Model::load(fixture("plain_conv.pt"), LoadOptions().with_optimization("fastest"));
    FAIL() << "an unknown optimization loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_STREQ(e.what(),
                 "unknown optimization 'fastest': expected one of auto, stored, prepacked, "
                 "optimize_for_inference, frozen");
  }
}

TEST(PlainArchives, WithAManifestAreVerifiedAtLoadOnSynthesizedInputs) {
  Model model = Model::load(fixture("manifest_only.pt"), LoadOptions().with_optimization("frozen"));
  EXPECT_FALSE(model.archive().has_golden());
  EXPECT_TRUE(model.optimized());
  EXPECT_EQ(model.optimization().chosen, "frozen");
  auto inputs = synthesized_inputs(model);
  ASSERT_EQ(inputs.size(), 1u);
  EXPECT_EQ(inputs[0].toTensor().sizes(), at::IntArrayRef({1, 3, 32, 32}));
  // The same seed every time: the check is repeatable.
  EXPECT_TRUE(inputs[0].toTensor().equal(synthesized_inputs(model)[0].toTensor()));
  at::Tensor expected = read_npy(fixture("plain_conv_output.npy"));
  at::Tensor output = model.forward({read_npy(fixture("plain_conv_input.npy"))}).toTensor();
  EXPECT_TRUE(compare_tensors(expected, output, 1e-4).ok);
  EXPECT_TRUE(synthesized_inputs(Model::load(fixture("plain_conv.pt"))).empty());
}

TEST(PlainArchives, OutputsAreComparedLeafByLeafByTheRule) {
  auto tuple = [](at::Tensor a, int64_t b) {
    return c10::IValue(c10::ivalue::Tuple::create({a, b}));
  };
  at::Tensor ones = at::ones({2, 3});
  EXPECT_EQ(first_difference(tuple(ones, 3), tuple(ones + 5e-5, 3), 1e-4), "");
  EXPECT_EQ(first_difference(tuple(ones, 3), tuple(ones + 0.5, 3), 1e-4),
            "output[0]: values differ beyond tolerance, max abs error 0.5");
  EXPECT_EQ(first_difference(tuple(ones, 3), tuple(ones, 4), 1e-4), "output[1]: 4, expected 3");
  EXPECT_EQ(first_difference(tuple(ones, 3), c10::IValue(ones), 1e-4),
            "output: 1 leaves, expected 2");
}

// A cgroup file system laid out under a temporary folder.
class CgroupTree {
 public:
  CgroupTree()
      : root_(std::filesystem::temp_directory_path() / ("cgroups-" + std::to_string(getpid()))) {
    std::filesystem::remove_all(root_);
  }
  ~CgroupTree() { std::filesystem::remove_all(root_); }
  void write(const std::string& file, const std::string& text) {
    auto path = root_ / file;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
};

TEST(CpuBudget, TheTightestQuotaOfTheCgroupAndItsAncestorsRoundedUp) {
  {
    CgroupTree v2;  // Kubernetes: a pod limited to 1.5 CPUs, its container unlimited
    v2.write("cpu.max", "max 100000\n");
    v2.write("kubepods/pod1/cpu.max", "150000 100000\n");
    v2.write("kubepods/pod1/c1/cpu.max", "max 100000\n");
    EXPECT_EQ(cgroup_cpu_limit(v2.root(), "0::/kubepods/pod1/c1\n"), 2);
    EXPECT_EQ(cgroup_cpu_limit(v2.root(), "0::/\n"), std::nullopt);
    v2.write("cpu.max", "50000 100000\n");  // a quota under one CPU still gets one thread
    EXPECT_EQ(cgroup_cpu_limit(v2.root(), "0::/kubepods/pod1/c1\n"), 1);
  }
  {
    CgroupTree v1;  // docker --cpus 3 on cgroup v1, seen from inside (its cgroup at the root)
    v1.write("cpu,cpuacct/cpu.cfs_quota_us", "300000\n");
    v1.write("cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    EXPECT_EQ(cgroup_cpu_limit(v1.root(), "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"), 3);
    v1.write("cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    EXPECT_EQ(cgroup_cpu_limit(v1.root(), "4:cpu,cpuacct:/docker/abc\n"), std::nullopt);
  }
  {
    CgroupTree hybrid;  // systemd's hybrid layout: v2 at unified/
    hybrid.write("unified/cgroup.controllers", "cpu\n");
    hybrid.write("unified/user.slice/cpu.max", "400000 100000\n");
    EXPECT_EQ(cgroup_cpu_limit(hybrid.root(), "0::/user.slice\n1:name=systemd:/user.slice\n"), 4);
    EXPECT_EQ(cgroup_cpu_limit(hybrid.root(), "garbage\n0::\n"), std::nullopt);
  }
  EXPECT_GE(available_cpus(), 1);
  EXPECT_LE(available_cpus(), affinity_cpus());
}

TEST(CpuBudget, TheDefaultThreadsAreTheCpusThisProcessMayUse) {
  const char* omp = std::getenv("OMP_NUM_THREADS");
  if (omp) GTEST_SKIP() << "OMP_NUM_THREADS is set";
  EXPECT_EQ(default_threads(), available_cpus());
  setenv("OMP_NUM_THREADS", "3", 1);
  EXPECT_EQ(default_threads(), 3);
  unsetenv("OMP_NUM_THREADS");
  configure_runtime(RuntimeOptions());
  EXPECT_EQ(intra_op_threads(), available_cpus());
}

}  // namespace
}  // namespace torchship

#include <ATen/detail/CUDAHooksInterface.h>

#include "torchship/version.h"

namespace torchship {
namespace {

TEST(CudaOnDemand, AskingLoadsLibtorchsCudaPartWhereItHasOne) {
  // torchship links libtorch's CPU library only; the first question about CUDA loads the CUDA
  // library of a CUDA build, whose start-up registers CUDA with libtorch (hasCUDART is true only
  // for the real CUDA hooks), with a GPU or without.
  bool available = cuda_available();
  EXPECT_EQ(at::detail::getCUDAHooks().hasCUDART(), libtorch_has_cuda());
  EXPECT_EQ(cuda_available(), available);
}

}  // namespace
}  // namespace torchship
