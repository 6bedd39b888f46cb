// Archives: opening, zip directory checks, manifests (and their hostile forms), archives
// written by plain torch.jit.save.

#include <fstream>
#include <iterator>
#include <thread>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "backends/prepacked_convolutions.h"
#include "fixtures.h"
#include "torchship/archive.h"
#include "torchship/error.h"
#include "torchship/example_inputs.h"
#include "torchship/golden.h"
#include "torchship/image.h"
#include "torchship/manifest.h"
#include "torchship/model.h"
#include "torchship/npy.h"
#include "torchship/tensor_json.h"
#include "torchship/torchship.h"
#include "torchship/value_tree.h"
#include "torchship/version.h"

namespace torchship {
namespace {

using nlohmann::json;
using testing::argmax_agrees;
using testing::close_by_rule;
using testing::error_message;
using testing::fixture;
using testing::max_abs_diff;
using testing::put_little;
using testing::rule_atol;

TEST(Archive, ReadsTheManifestWithoutLoadingTheModel) {
  Archive archive = Archive::open(fixture("classifier.pt"));
  ASSERT_TRUE(archive.manifest().has_value());
  const Manifest& manifest = *archive.manifest();
  EXPECT_EQ(manifest.task, "classification");
  EXPECT_EQ(manifest.labels.size(), 1000u);
  EXPECT_EQ(manifest.label(281), "tabby");
  EXPECT_EQ(manifest.exported.method, "trace");
  ASSERT_EQ(manifest.inputs.size(), 1u);
  ASSERT_TRUE(manifest.inputs[0].image.has_value());
  EXPECT_EQ(manifest.inputs[0].image->resize.mode, ResizeMode::Stretch);
  EXPECT_EQ(manifest.inputs[0].image->resize.height, 224);
  EXPECT_TRUE(archive.has_golden());
}

TEST(Archive, PlainTorchScriptHasNoManifestAndStillRuns) {
  Model model = Model::load(fixture("plain.pt"));
  EXPECT_FALSE(model.manifest().has_value());
  EXPECT_EQ(model.signature(), "forward(a: Tensor, b: Tensor) -> Tensor");
  at::Tensor a = at::arange(6, at::kFloat).reshape({2, 3});
  at::Tensor b = at::ones({3, 1});
  at::Tensor out = model.forward({a, b}).toTensor();
  EXPECT_TRUE(at::equal(out, at::tensor({3.0f, 12.0f}).reshape({2, 1})));
}

TEST(Archive, RejectsBrokenFilesWithOneLineSayingWhy) {
  auto message = [](const std::string& name) {
    auto path = fixture(name);
    return error_message([&] { Archive::open(path); });
  };
  std::string folder = fixture("").string();
  EXPECT_EQ(message("empty.pt"), "cannot load " + folder +
                                     "empty.pt: the file is empty, expected a TorchScript archive");
  EXPECT_EQ(message("random.pt"), "cannot load " + folder +
                                      "random.pt: not a TorchScript archive (expected a zip file "
                                      "written by torch.jit.save)");
  EXPECT_EQ(message("truncated.pt"),
            "cannot load " + folder + "truncated.pt: the zip is truncated or corrupt");
  EXPECT_EQ(message("checkpoint.pt"),
            "cannot load " + folder +
                "checkpoint.pt: this zip is a torch.save checkpoint, not a TorchScript module; "
                "export the model with torchship.export or torch.jit.save");
  EXPECT_EQ(message("other.zip"), "cannot load " + folder +
                                      "other.zip: this zip is not a TorchScript archive (it was "
                                      "not written by torch.jit.save)");
  EXPECT_EQ(error_message([] { Archive::open("/nonexistent/model.pt"); }),
            "cannot load /nonexistent/model.pt: no such file");
}

TEST(Manifest, ValidatesFieldsAndNamesTheBadOne) {
  EXPECT_EQ(error_message([] { Manifest::parse(R"({"name": "x"})"); }),
            "invalid manifest: missing field 'format_version'");
  EXPECT_EQ(error_message([] { Manifest::parse(R"({"format_version": 99})"); }),
            "unsupported manifest format_version 99: this torchship reads 1 to 1; upgrade "
            "torchship");
  EXPECT_EQ(error_message([] {
              Manifest::parse(
                  R"({"format_version": 1, "inputs": [{"name": "x", "image": {"color": "rgb"}}]})");
            }),
            "invalid manifest: 'inputs[0].image.color' must be one of RGB, BGR, GRAY, got \"rgb\"");
  EXPECT_EQ(error_message([] { Manifest::parse(R"({"format_version": 1, "task": "detect"})"); }),
            "invalid manifest: 'task' must be one of classification, segmentation, generic, got "
            "\"detect\"");
  EXPECT_EQ(error_message([] { Manifest::parse(R"({"format_version": 1, "precision": "fp16"})"); }),
            "invalid manifest: 'precision' must be one of fp32, bf16, int8, got \"fp16\"");
  EXPECT_EQ(Manifest::parse(R"({"format_version": 1})").precision, "fp32");
  EXPECT_EQ(error_message([] {
              Manifest::parse("{not json");
            }).rfind("invalid manifest: torchship.json is not valid JSON", 0),
            0u);
}

TEST(Manifest, ReadsStaticBatchModelsAndRefusesUnsafeOnes) {
  auto parse = [](const std::string& statics) {
    return Manifest::parse(R"({"format_version": 1, "export": {"static_batches": )" + statics +
                           "}}");
  };
  auto models =
      parse(R"([{"batch": 1, "model": "batch_1", "arguments": [0, 2]}])").exported.static_batches;
  ASSERT_EQ(models.size(), 1u);
  EXPECT_EQ(models[0].batch, 1);
  EXPECT_EQ(models[0].model, "batch_1");
  EXPECT_EQ(models[0].arguments, (std::vector<size_t>{0, 2}));
  EXPECT_TRUE(Manifest::parse(R"({"format_version": 1})").exported.static_batches.empty());
  // The name becomes a folder inside the package: nothing that climbs out of it.
  EXPECT_EQ(
      error_message([&] { parse(R"([{"batch": 1, "model": "../model", "arguments": [0]}])"); }),
      "invalid manifest: 'export.static_batches[0].model' must be a name of letters, "
      "digits and '_', got \"../model\"");
  EXPECT_EQ(error_message([&] { parse(R"([{"batch": 0, "model": "b", "arguments": [0]}])"); }),
            "invalid manifest: 'export.static_batches[0].batch' must be a batch size of 1 or "
            "more, got 0");
  EXPECT_EQ(error_message([&] { parse(R"([{"batch": 1, "model": "b", "arguments": []}])"); }),
            "invalid manifest: 'export.static_batches[0].arguments' must be the batched "
            "arguments' positions, got []");
  EXPECT_EQ(error_message([&] { parse(R"([{"batch": 1, "model": "b"}])"); }),
            "invalid manifest: 'export.static_batches[0].arguments' must be the batched "
            "arguments' positions, got []");
  EXPECT_EQ(error_message([&] { parse(R"({"batch": 1})"); }),
            "invalid manifest: 'export.static_batches' must be a list, got {\"batch\":1}");
  EXPECT_EQ(error_message([&] { parse(R"([{"model": "b", "arguments": [0]}])"); }),
            "invalid manifest: missing field 'export.static_batches[0].batch'");
}

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

TEST(Manifest, SizesAreCheckedLikeEveryOtherSizeFromOutside) {
  auto parse = [](const std::string& inputs) {
    Manifest::parse(R"({"format_version": 1, "task": "generic", "inputs": )" + inputs + "}");
  };
  EXPECT_EQ(error_message([&] { parse(R"([{"name": "x", "shape": [1e300]}])"); }),
            "invalid manifest: 'inputs[0].shape' must be a list of integers, got [1e+300]");
  EXPECT_EQ(error_message([&] { parse(R"([{"name": "x", "shape": [4611686018427387904, 4]}])"); }),
            "invalid manifest: 'inputs[0].shape' must be a tensor shape (shape: shape "
            "[4611686018427387904, 4] has more elements than a tensor can hold), got "
            "[4611686018427387904,4]");
  EXPECT_EQ(error_message([&] {
              parse(R"([{"name": "x", "image": {"resize": {"mode": "stretch",
                        "size": [100000, 100000]}}}])");
            }),
            "invalid manifest: 'inputs[0].image.resize.size' must be [height, width] of at most "
            "120000000 pixels, got [100000,100000]");
}

// libtorch's reader allocates a record's size as the zip's directory states it, in its
// constructor: a 2 kB archive claiming a 4 GB "version" record is refused before that.
TEST(Archive, ForgedRecordSizesAreRefusedBeforeTheReaderAllocates) {
  std::ifstream in(testing::fixture("plain.pt"), std::ios::binary);
  std::string zip((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t entry = zip.find(std::string("PK\x01\x02", 4));
  std::string name;
  while (entry != std::string::npos) {
    size_t name_size = static_cast<uint8_t>(zip[entry + 28]) | static_cast<uint8_t>(zip[entry + 29])
                                                                   << 8;
    name = zip.substr(entry + 46, name_size);
    if (name.size() >= 8 && name.compare(name.size() - 8, 8, "/version") == 0) break;
    entry = zip.find(std::string("PK\x01\x02", 4), entry + 4);
  }
  ASSERT_NE(entry, std::string::npos);
  put_little(zip, entry + 24, 0xFFFFFFFE, 4);  // the uncompressed size
  auto path = std::filesystem::temp_directory_path() / "torchship_test_forged.pt";
  {
    std::ofstream out(path, std::ios::binary);
    out.write(zip.data(), static_cast<std::streamsize>(zip.size()));
  }
  EXPECT_EQ(error_message([&] { Archive::open(path); }),
            "cannot load " + path.string() + ": the zip's directory says record " + name +
                " is 4294967294 bytes, more than the " + std::to_string(zip.size()) +
                "-byte archive can hold (a forged or corrupt zip)");
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace torchship
