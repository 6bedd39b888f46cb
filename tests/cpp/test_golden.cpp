// Golden vectors: rerun on this machine and compared by the one rule.

#include <ATen/ATen.h>

#include "fixtures.h"
#include "torchship/torchship.h"

namespace torchship {
namespace {

using testing::error_message;
using testing::fixture;

TEST(Golden, FaithfulArchivesReproduceTheirVectors) {
  Model model = Model::load(fixture("classifier.pt"), LoadOptions().with_optimize(false));
  GoldenReport report = check_golden(model);
  ASSERT_EQ(report.cases.size(), 1u);
  EXPECT_TRUE(report.ok());
  const GoldenLeaf& leaf = report.cases[0].leaves.at(0);
  EXPECT_EQ(leaf.path, "output");
  EXPECT_LE(leaf.max_abs, leaf.atol);
  // The tolerance recorded at export: fp32's rtol, and atol scaled to the logits' magnitude.
  EXPECT_EQ(report.rtol, 1e-4);
  at::Tensor recorded = model.forward(golden_inputs(model)).toTensor();
  EXPECT_NEAR(leaf.atol, 1e-4 * recorded.abs().max().item<double>(), 1e-6);
}

TEST(Golden, AlteredVectorsFailTheCheckAndTheCheckedLoad) {
  GoldenReport report = check_golden(Model::load(fixture("tampered.pt")));
  EXPECT_FALSE(report.ok());
  EXPECT_NEAR(report.cases[0].leaves[0].max_abs, 0.5, 1e-6);
  auto path = fixture("tampered.pt");
  EXPECT_EQ(error_message([&] { Model::load(path, LoadOptions().with_golden_check()); }),
            "golden check failed for " + path.string() +
                ": case 0, output: values differ beyond tolerance (max abs error 0.5)");
  EXPECT_EQ(error_message([] { check_golden(Model::load(fixture("plain.pt"))); }),
            fixture("plain.pt").string() +
                " has no golden vectors (export it with torchship.export to record them)");
}

TEST(Golden, AnArchiveThatFailsOnItsOwnInputsHereSaysSoInOneLine) {
  // Neither the optimizer's timing nor the warm-up lets libtorch's traceback through.
  auto path = fixture("unrunnable.pt");
  EXPECT_EQ(error_message([&] { Model::load(path); }),
            "cannot run " + path.string() +
                " on this machine: it fails on its own golden inputs (no kernel for these values "
                "on this machine)");
  Model model = Model::load(path, LoadOptions().with_warmup(0));
  EXPECT_FALSE(model.optimized());
  ASSERT_EQ(model.notes().size(), 1u);
  EXPECT_EQ(model.notes()[0],
            "not optimized: the module as stored fails on the golden vectors (no kernel for "
            "these values on this machine)");
}

}  // namespace
}  // namespace torchship
