// The backends behind Model: TorchScript, AOTInductor and OpenVINO through one interface.

#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "backends/tree_spec.h"
#include "core/torch_compat.h"
#include "fixtures.h"
#include "platform/cpu_features.h"
#include "torchship/golden.h"
#include "torchship/model.h"
#include "torchship/npy.h"
#include "torchship/value_tree.h"
#include "torchship/version.h"

namespace torchship::testing {
namespace {

namespace fs = std::filesystem;

// A .pt2-shaped zip: AOTInductor's metadata and, optionally, a manifest; no compiled library.
fs::path fake_package(const std::string& name, const std::string& metadata,
                      const std::string& manifest = "") {
  fs::path path = scratch(name + ".pt2");
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
  fs::path path = scratch("empty_package.pt2");
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

// OpenVINO archives are made where the fixtures' Python has openvino; this build runs them where
// it was configured with OpenVINO (compiled_backends() says so).
bool have_openvino() {
  auto backends = compiled_backends();
  return std::find(backends.begin(), backends.end(), "OpenVINO") != backends.end();
}

TEST(Backends, AnOpenVinoArchiveRunsAsPythonComputedIt) {
  if (!have_fixture("tiny.ov")) GTEST_SKIP() << "no OpenVINO fixtures";
  Archive archive = Archive::open(fixture("tiny.ov"));
  EXPECT_EQ(archive.format(), ModelFormat::OpenVINO);
  EXPECT_STREQ(format_id(archive.format()), "openvino");
  ASSERT_TRUE(archive.manifest());
  EXPECT_TRUE(archive.has_golden());
  if (!have_openvino()) {
    EXPECT_NE(error_message([] { Model::load(fixture("tiny.ov")); })
                  .find("it is an OpenVINO archive, and this torchship was built without "
                        "OpenVINO"),
              std::string::npos);
    return;
  }
  Model model = Model::load(fixture("tiny.ov"));
  EXPECT_EQ(model.format(), ModelFormat::OpenVINO);
  EXPECT_EQ(model.precision(), "fp32");
  EXPECT_EQ(model.signature(), "forward(x: Tensor) -> Tensor");
  at::Tensor output = model.forward({read_npy(fixture("tiny_ov_input.npy"))}).toTensor();
  EXPECT_TRUE(close_by_rule(read_npy(fixture("tiny_ov_output.npy")), output, archive));
  EXPECT_TRUE(check_golden(model).ok());
}

TEST(Backends, AnOpenVinoModelServesConcurrentForwards) {
  if (!have_fixture("tiny.ov") || !have_openvino()) GTEST_SKIP();
  Model model = Model::load(fixture("tiny.ov"));
  at::Tensor input = read_npy(fixture("tiny_ov_input.npy"));
  at::Tensor expected = model.forward({input}).toTensor();
  std::vector<std::thread> threads;
  std::atomic<int> agreeing{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        // Each forward's outputs are its own: a request reused by another thread must not
        // overwrite them.
        at::Tensor output = model.forward({input}).toTensor();
        if (at::equal(output, expected)) ++agreeing;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(agreeing.load(), 40);
}

// tiny.ov records a static batch 1: a batch of exactly one row runs on the IR reshaped to it at
// load, and computes what the dynamic IR computes for that row.
TEST(Backends, AnOpenVinoStaticBatchRunsRequestsOfItsSize) {
  if (!have_fixture("tiny.ov") || !have_openvino()) GTEST_SKIP();
  Archive archive = Archive::open(fixture("tiny.ov"));
  ASSERT_EQ(archive.manifest()->exported.static_batches.size(), 1u);
  Model model = Model::load(fixture("tiny.ov"));
  std::string notes;
  for (const auto& note : model.notes()) notes += note;
  EXPECT_NE(notes.find("; also for static batch size 1"), std::string::npos) << notes;
  at::Tensor input = read_npy(fixture("tiny_ov_input.npy"));
  at::Tensor both = model.forward({input}).toTensor();
  for (int64_t row = 0; row < input.size(0); ++row) {
    at::Tensor one = model.forward({input.slice(0, row, row + 1)}).toTensor();
    EXPECT_TRUE(close_by_rule(both.slice(0, row, row + 1), one, archive)) << row;
  }
}

// An archive of every form (format="auto"): each form opens from memory under the archive's
// name; load runs the fastest that reproduces its golden vectors, or the one asked for.
TEST(Backends, AnArchiveOfEveryFormRunsTheFormChosenAtLoad) {
  if (!have_fixture("tiny.torchship") || !have_openvino()) GTEST_SKIP();
  Archive archive = Archive::open(fixture("tiny.torchship"));
  ASSERT_EQ(archive.format(), ModelFormat::Auto);
  ASSERT_EQ(archive.forms().size(), 3u);
  Archive form = archive.open_form(archive.forms()[2]);
  EXPECT_EQ(form.format(), ModelFormat::OpenVINO);
  EXPECT_EQ(form.path(), archive.path());
  EXPECT_EQ(form.file().string().rfind("/proc/self/fd/", 0), 0u) << form.file();
  at::Tensor input = read_npy(fixture("tiny_ov_input.npy"));
  at::Tensor expected = read_npy(fixture("tiny_ov_output.npy"));
  for (const char* engine : {"auto", "torchscript", "aoti", "openvino"}) {
    Model model = Model::load(fixture("tiny.torchship"), LoadOptions().with_engine(engine));
    EXPECT_NE(model.format(), ModelFormat::Auto);
    if (std::string(engine) != "auto") EXPECT_STREQ(format_id(model.format()), engine);
    EXPECT_EQ(model.notes().front().rfind("engine: ", 0), 0u) << model.notes().front();
    EXPECT_TRUE(close_by_rule(expected, model.forward({input}).toTensor(), model.archive()))
        << engine;
  }
  EXPECT_EQ(error_message([] {
              Model::load(fixture("tiny.torchship"), LoadOptions().with_engine("tensorrt"));
            }),
            "unknown engine 'tensorrt': expected auto, torchscript, aoti or openvino");
}

TEST(Backends, AnOpenVinoInputOfAnotherTypeIsOneLine) {
  if (!have_fixture("structured.ov") || !have_openvino()) GTEST_SKIP();
  Model model = Model::load(fixture("structured.ov"));
  // The manifest's spec refuses first, as for every format.
  auto run = [&](const at::Tensor& x) { model.forward({x, c10::IValue(int64_t{3})}); };
  EXPECT_EQ(error_message([&] {
              run(torch::zeros({2, 4}, torch::kInt));
            }),
            "input 'x': expected FP32 tensor of shape [-1, 4], got INT32 [2, 4]");
  EXPECT_EQ(error_message([&] {
              run(torch::zeros({2, 5}));
            }),
            "input 'x': expected FP32 tensor of shape [-1, 4], got FP32 [2, 5]");
}

TEST(Backends, PrecisionAtLoadIsForOpenVinoOnly) {
  EXPECT_EQ(error_message([] {
              Model::load(fixture("classifier.pt"), LoadOptions().with_precision("fp16"));
            }),
            "precision must be fp32, bf16 or auto, got 'fp16'");
  if (!have_fixture("tiny.ov") || !have_openvino()) return;
  // OpenVINO runs bf16 natively or falls back to fp32 by itself, except where oneDNN is held
  // below the CPU's own ISA (ONEDNN_MAX_CPU_ISA, as CI's other-kernels stage sets it): then
  // the load is refused in one line, at compile or at the golden inputs' warm-up.
  if (std::getenv("ONEDNN_MAX_CPU_ISA")) {
    try {
      Model::load(fixture("tiny.ov"), LoadOptions().with_precision("bf16"));
    } catch (const Error& e) {
      std::string what = e.what();
      EXPECT_EQ(e.kind(), ErrorKind::Unsupported) << what;
      EXPECT_TRUE(what.find("in bf16: OpenVINO cannot compile it for bf16 on this CPU") !=
                      std::string::npos ||
                  what.find("it fails on its own golden inputs") != std::string::npos)
          << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
      return;
    }
  }
  Model model = Model::load(fixture("tiny.ov"), LoadOptions().with_precision("bf16"));
  EXPECT_EQ(model.precision(), "bf16");
  GoldenReport report = check_golden(model);
  EXPECT_DOUBLE_EQ(report.rtol, 1e-2);  // bf16's tolerance, whatever the CPU ran
  EXPECT_TRUE(report.ok());
}

}  // namespace
}  // namespace torchship::testing
