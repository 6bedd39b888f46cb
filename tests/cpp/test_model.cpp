// Model: loading, checked inputs, forward, tasks, load-time optimization, the trained model.

#include <fstream>
#include <iostream>
#include <iterator>

#include <ATen/ATen.h>

#include "backends/prepacked_convolutions.h"
#include "fixtures.h"
#include "input_spec.h"
#include "torchship/torchship.h"

namespace torchship {
namespace {

using testing::argmax_agrees;
using testing::classifier;
using testing::close_by_rule;
using testing::error_message;
using testing::fixture;
using testing::max_abs_diff;
using testing::rule_atol;
using testing::segmenter;
using testing::trained;

TEST(Model, ExposesTheForwardSchema) {
  const Model& model = classifier();
  ASSERT_EQ(model.inputs().size(), 1u);
  EXPECT_EQ(model.inputs()[0].name, "image");
  EXPECT_EQ(model.inputs()[0].type_name(), "Tensor");
  EXPECT_EQ(segmenter().signature(),
            "forward(images: Union[Tensor, List[Tensor]]) -> Tuple[Tensor, Tensor, Tensor]");
  ModelSummary summary = model.summary();
  EXPECT_EQ(summary.parameter_count, 21797672);  // torchvision's ResNet34
  EXPECT_EQ(summary.methods, std::vector<std::string>{"forward"});
}

TEST(Model, ClassifierMatchesPythonOnChelseaAndRandomImages) {
  for (std::string name : {"chelsea", "random_0", "random_1"}) {
    at::Tensor expected = read_npy(fixture("classifier_" + name + ".npy"));
    auto image = fixture(name + ".png");
    at::Tensor logits = classifier().forward({classifier().image_input(image)}).toTensor();
    EXPECT_TRUE(close_by_rule(expected, logits, classifier().archive())) << name;

    auto top = classifier().classify(image, 3);
    ASSERT_EQ(top.size(), 3u);
    EXPECT_TRUE(argmax_agrees(expected, expected.argmax(1), at::tensor({top[0].index}), 1,
                              rule_atol(expected, classifier().archive())))
        << name;
    EXPECT_EQ(top[0].label, classifier().manifest()->label(top[0].index));
    // Softmax moves no probability by more than twice the largest change of a logit.
    EXPECT_NEAR(top[0].score, expected.softmax(1).max().item<double>(),
                2 * max_abs_diff(expected, logits) + 1e-6);
    EXPECT_GE(top[0].score, top[1].score);
  }
}

TEST(Model, ClassifiesDecodedTensorsLikeFiles) {
  auto path = fixture("chelsea.png");
  at::Tensor rgb = decode_image(path);  // any size: classify resizes per the manifest
  auto from_tensor = classifier().classify(rgb, 1);
  auto from_file = classifier().classify(path, 1);
  EXPECT_EQ(from_tensor[0].index, from_file[0].index);
  EXPECT_DOUBLE_EQ(from_tensor[0].score, from_file[0].score);
}

// Labels are the argmax of the logits and the overlay colours each pixel by its label: both
// must match Python wherever the labels are decided (see argmax_agrees).
void expect_segmentation_matches(const std::string& name, const at::Tensor& logits,
                                 const at::Tensor& labels, const at::Tensor& overlay) {
  const Archive& archive = segmenter().archive();
  auto expected = [&](const char* output) {
    return read_npy(fixture("segmentation_" + name + "_" + output + ".npy"));
  };
  at::Tensor expected_logits = expected("logits");
  at::Tensor expected_labels = expected("labels");
  at::Tensor expected_overlay = expected("overlay");
  int class_dim = expected_logits.dim() - 3;
  if (logits.dim() == expected_logits.dim()) {
    EXPECT_TRUE(close_by_rule(expected_logits, logits, archive)) << name;
  }
  EXPECT_TRUE(argmax_agrees(expected_logits, expected_labels, labels.view_as(expected_labels),
                            class_dim, rule_atol(expected_logits, archive)))
      << name;
  ASSERT_EQ(overlay.numel(), expected_overlay.numel()) << name;
  at::Tensor same_label = labels.view_as(expected_labels).eq(expected_labels).unsqueeze(-1);
  at::Tensor actual_overlay = overlay.view_as(expected_overlay);
  EXPECT_TRUE(at::equal(actual_overlay.masked_select(same_label),
                        expected_overlay.masked_select(same_label)))
      << name;
}

TEST(Model, SegmentationMatchesPythonForOneImageAListAndABatch) {
  struct Case {
    std::string name;
    c10::IValue input;
  };
  c10::impl::GenericList list(c10::TensorType::get());
  list.push_back(segmenter().image_input(fixture("chelsea.png")));
  list.push_back(segmenter().image_input(fixture("chelsea_flipped.png")));
  std::vector<Case> cases = {
      {"single", segmenter().image_input(fixture("chelsea.png"))},
      {"list", list},
      {"batch", read_npy(fixture("segmentation_batch_input.npy"))},
  };
  for (const auto& test_case : cases) {
    auto outputs = segmenter().forward({test_case.input}).toTupleRef().elements();
    ASSERT_EQ(outputs.size(), 3u);
    expect_segmentation_matches(test_case.name, outputs[0].toTensor(), outputs[1].toTensor(),
                                outputs[2].toTensor());
  }
}

TEST(Model, SegmentReturnsLabelsAndOverlayOfOneImage) {
  Segmentation result = segmenter().segment(fixture("chelsea.png"));
  EXPECT_EQ(result.logits.sizes(), (std::vector<int64_t>{21, 300, 451}));
  EXPECT_EQ(result.labels.sizes(), (std::vector<int64_t>{300, 451}));
  EXPECT_EQ(result.overlay.sizes(), (std::vector<int64_t>{300, 451, 3}));
  expect_segmentation_matches("single", result.logits.unsqueeze(0), result.labels, result.overlay);
}

TEST(Model, TorchvisionOperatorsMatchPython) {
  // The archive calls torchvision::nms and torchvision::roi_align: loading finds the operator
  // library of the torchvision built for this libtorch on its own.
  Model model = Model::load(fixture("detection.pt"));
  c10::IValue output =
      model.forward({input_from_spec(model, 0, fixture("astronaut_small.png").string())});
  auto detections = output.toList().get(0).toGenericDict();
  for (std::string key : {"boxes", "scores", "labels"}) {
    at::Tensor expected = read_npy(fixture("detection_" + key + ".npy"));
    EXPECT_GT(expected.size(0), 0);
    // labels exactly: the fixture builder checked that every kept box's class is decided.
    EXPECT_TRUE(close_by_rule(expected, detections.at(key).toTensor(), model.archive())) << key;
  }
}

TEST(Model, TorchvisionDetectorRunsWithItsOutputStructure) {
  // A scripted Faster R-CNN with random weights: too ill-conditioned for numbers (see the
  // fixture builder), so this checks that it loads and answers like a detector.
  Model model = Model::load(fixture("fasterrcnn.pt"), LoadOptions().with_optimize(false));
  c10::IValue output =
      model.forward({input_from_spec(model, 0, fixture("astronaut_small.png").string())});
  ASSERT_EQ(output.toList().size(), 1u);
  auto detections = output.toList().get(0).toGenericDict();
  at::Tensor boxes = detections.at("boxes").toTensor();
  ASSERT_EQ(boxes.dim(), 2);
  EXPECT_EQ(boxes.size(1), 4);
  EXPECT_LE(boxes.size(0), 20);  // box_detections_per_img
  EXPECT_EQ(detections.at("scores").toTensor().sizes(), at::IntArrayRef{boxes.size(0)});
  EXPECT_EQ(detections.at("labels").toTensor().scalar_type(), at::kLong);
}

TEST(Model, DetectReadsTheOutputsTheManifestNamesInTheImagesPixels) {
  // Two detectors of the same two objects: cx cy w h as fractions of their 64 x 32 input, and
  // x y w h in that input's pixels. Both come out as corners in the 128 x 128 image's pixels.
  for (std::string name : {"fixed_boxes_normalized.pt", "fixed_boxes_pixels.pt"}) {
    SCOPED_TRACE(name);
    Model model = Model::load(fixture(name));
    std::vector<Detection> found = model.detect(fixture("astronaut_small.png"));
    ASSERT_EQ(found.size(), 2u);
    const float expected[2][4] = {{32, 32, 96, 96}, {25.6f, 19.2f, 38.4f, 44.8f}};
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_NEAR(found[i].x1, expected[i][0], 1e-4);
      EXPECT_NEAR(found[i].y1, expected[i][1], 1e-4);
      EXPECT_NEAR(found[i].x2, expected[i][2], 1e-4);
      EXPECT_NEAR(found[i].y2, expected[i][3], 1e-4);
      ASSERT_EQ(found[i].keypoints.size(), 1u);
      EXPECT_EQ(found[i].keypoints[0].name, "nose");
    }
    EXPECT_NEAR(found[0].score, 0.9, 1e-5);
    EXPECT_EQ(found[0].label, 1);
    EXPECT_EQ(found[0].label_name, "dog");
    EXPECT_EQ(found[1].label_name, "cat");
    EXPECT_NEAR(found[0].keypoints[0].x, 32, 1e-4);
    EXPECT_NEAR(found[0].keypoints[0].y, 96, 1e-4);
    EXPECT_NEAR(found[1].keypoints[0].x, 64, 1e-4);
    EXPECT_NEAR(found[1].keypoints[0].y, 64, 1e-4);

    // min_score leaves out the 0.2 object; a decoded tensor of another size maps to its pixels.
    at::Tensor wide = at::zeros({50, 400, 3}, at::kByte);
    std::vector<Detection> confident = model.detect(wide, 0.5);
    ASSERT_EQ(confident.size(), 1u);
    EXPECT_NEAR(confident[0].x1, 100, 1e-3);
    EXPECT_NEAR(confident[0].y1, 12.5, 1e-4);
    EXPECT_NEAR(confident[0].x2, 300, 1e-3);
    EXPECT_NEAR(confident[0].y2, 37.5, 1e-4);
  }
}

TEST(Model, DetectTakesTorchvisionsListInDictOutOutputs) {
  // torchvision's operators in a pipeline that takes a list of images and returns a dict per
  // image: detect wraps the image and reads the dict's keys.
  Model model = Model::load(fixture("detection.pt"));
  std::vector<Detection> found = model.detect(fixture("astronaut_small.png"));
  at::Tensor boxes = read_npy(fixture("detection_boxes.npy"));
  at::Tensor scores = read_npy(fixture("detection_scores.npy"));
  at::Tensor labels = read_npy(fixture("detection_labels.npy"));
  ASSERT_EQ(static_cast<int64_t>(found.size()), boxes.size(0));
  at::Tensor got_boxes = at::empty({boxes.size(0), 4});
  at::Tensor got_scores = at::empty({boxes.size(0)});
  for (size_t i = 0; i < found.size(); ++i) {
    const auto& d = found[i];
    got_boxes[static_cast<int64_t>(i)] = at::tensor({d.x1, d.y1, d.x2, d.y2});
    got_scores[static_cast<int64_t>(i)] = static_cast<float>(d.score);
    EXPECT_EQ(d.label, labels[static_cast<int64_t>(i)].item<int64_t>());
    EXPECT_EQ(d.label_name, model.manifest()->label(d.label));
    EXPECT_TRUE(d.keypoints.empty());
  }
  EXPECT_TRUE(close_by_rule(boxes, got_boxes, model.archive()));
  EXPECT_TRUE(close_by_rule(scores, got_scores, model.archive()));

  Model faster_rcnn = Model::load(fixture("fasterrcnn.pt"), LoadOptions().with_optimize(false));
  std::vector<Detection> rcnn = faster_rcnn.detect(fixture("astronaut_small.png"));
  EXPECT_LE(rcnn.size(), 20u);  // box_detections_per_img
  for (const auto& d : rcnn) EXPECT_GE(d.label, 0);
}

TEST(Model, DetectRefusesModelsThatAreNoDetectors) {
  EXPECT_EQ(error_message([&] { classifier().detect(fixture("chelsea.png")); }),
            "detect needs a model whose manifest declares task 'detection' (which outputs are "
            "boxes and scores); this one's task is 'classification'");
}

TEST(Model, RejectsInputsThatDoNotFitWithTheReason) {
  const Model& model = classifier();
  EXPECT_EQ(error_message([&] { model.forward({}); }), "expected 1 input (image: Tensor), got 0");
  EXPECT_EQ(error_message([&] {
              model.forward({at::zeros({224, 224, 3}, at::kFloat)});
            }),
            "input 'image': expected UINT8 tensor of shape [224, 224, 3] (HWC), got FP32 "
            "[224, 224, 3]");
  EXPECT_EQ(error_message([&] { model.forward({c10::IValue(std::string("cat"))}); }),
            "input 'image': expected Tensor, got str \"cat\"");
  EXPECT_EQ(error_message([&] {
              segmenter().forward({at::zeros({2, 8, 8, 4}, at::kByte)});
            }),
            "the model rejected the input: expected images H x W x 3 (RGB), got shape "
            "[2, 8, 8, 4]");
}

TEST(Model, RefusesDevicesThisBuildCannotServe) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_EQ(
      error_message([] { Model::load(fixture("plain.pt"), LoadOptions().with_device("cuda")); }),
      "device 'cuda' requested, but " +
          std::string(libtorch_has_cuda() ? "no CUDA device is visible"
                                          : "this libtorch was built without CUDA") +
          "; use --device cpu");
  EXPECT_EQ(
      error_message([] { Model::load(fixture("plain.pt"), LoadOptions().with_device("gpu")); }),
      "invalid device 'gpu': expected cpu, cuda or cuda:N");
}

TEST(TrainedModel, LibraryBatchesGivePythonsPredictionsOnTheWholeTestSet) {
  // The 10,000 test images, decoded once: the archives share the manifest's input.
  Model fp32 = Model::load(trained("fashion_mnist.pt"));
  ASSERT_TRUE(fp32.manifest()->batch_dim);
  EXPECT_EQ(fp32.manifest()->labels.at(9), "Ankle boot");
  std::vector<c10::IValue> images;
  for (int i = 0; i < 10000; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "fashion_mnist_test/%05d.png", i);
    images.push_back(fp32.image_input(trained(name)));
  }
  // Python's logits through the same exported model, in batches of 256: every prediction
  // agrees on the CPU that made the fixtures; elsewhere only ties may not.
  auto agrees_with_python = [&](const Model& model, const std::string& logits_file,
                                const std::string& what) {
    at::Tensor logits = read_npy(trained(logits_file));
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{10000, 10}));
    auto predictions = model.classify_batch(images, 1, 256);
    ASSERT_EQ(predictions.size(), 10000u);
    at::Tensor classes = at::empty({10000}, at::kLong);
    for (int i = 0; i < 10000; ++i) classes[i] = predictions[i][0].index;
    int64_t ties = 0;
    EXPECT_TRUE(argmax_agrees(logits, logits.argmax(1), classes, 1,
                              rule_atol(logits, model.archive()), &ties))
        << what;
    std::cout << what << ": " << classes.eq(logits.argmax(1)).sum().item<int64_t>()
              << " of 10000 predictions equal Python's; " << ties << " undecided by the rule\n";
  };
  for (std::string precision : {"fp32", "bf16", "int8"}) {
    std::string stem = precision == "fp32" ? "fashion_mnist" : "fashion_mnist_" + precision;
    if (precision == "bf16" && !testing::bf16_convolutions_run()) {
      // This libtorch has no bf16 convolution for this CPU (1.13 without AVX-512): the archive
      // was not made here, or, made on another CPU, it refuses to load in one line.
      if (!testing::have_trained(stem + ".pt")) continue;
      std::string message = error_message([&] { Model::load(trained(stem + ".pt")); });
      EXPECT_EQ(message.rfind("cannot run " + trained(stem + ".pt").string() +
                                  " on this machine: it fails on its own golden inputs (",
                              0),
                0u)
          << message;
      EXPECT_NE(message.find("; it is a bf16 archive"), std::string::npos) << message;
      continue;
    }
    Model model = precision == "fp32" ? fp32 : Model::load(trained(stem + ".pt"));
    EXPECT_EQ(model.manifest()->precision, precision);
    agrees_with_python(model, stem + "_python_logits.npy", precision);
  }
  // The fp32 pipeline compiled by AOTInductor (made only by a torch that has it), with a
  // dynamic batch dimension of 1 to 4096.
  if (testing::have_trained("fashion_mnist.pt2")) {
    Model compiled = Model::load(trained("fashion_mnist.pt2"));
    EXPECT_EQ(compiled.format(), ModelFormat::AOTInductor);
    EXPECT_EQ(compiled.max_batch_size(), std::optional<int64_t>(4096));
    agrees_with_python(compiled, "fashion_mnist_pt2_python_logits.npy", "fp32 AOTInductor");
  }
}

TEST(TrainedModel, OneImageAtATimeAgreesWithBatches) {
  Model model = Model::load(trained("fashion_mnist.pt"));
  auto image = trained("fashion_mnist_test/00000.png");
  auto single = model.classify(image, 3);
  auto batched = model.classify_batch({model.image_input(image), model.image_input(image)}, 3, 2);
  ASSERT_EQ(batched.size(), 2u);
  EXPECT_EQ(single[0].index, batched[1][0].index);
  EXPECT_NEAR(single[0].score, batched[1][0].score, 1e-5);
  // Any size, any colour: decoded to gray and resized to 28 x 28 by the manifest.
  at::Tensor cat = model.image_input(fixture("chelsea.png")).toTensor();
  EXPECT_EQ(cat.sizes(), (std::vector<int64_t>{1, 28, 28, 1}));
}

TEST(Optimization, KeptOnlyWhenTheGoldenVectorsStillHold) {
  // Which models optimize_for_inference keeps depends on the CPU's kernels; the rule does not:
  // an optimized model reproduces the golden vectors, and one that is not says why.
  for (std::string name : {"classifier.pt", "segmentation.pt", "detection.pt", "generic.pt"}) {
    Model model = Model::load(fixture(name));
    if (model.optimized()) {
      EXPECT_TRUE(check_golden(model).ok()) << name;
      for (const auto& note : model.notes()) {
        EXPECT_TRUE(note.rfind("optimized: frozen, ", 0) == 0 ||
                    note.rfind("optimized: frozen + optimize_for_inference (", 0) == 0 ||
                    note.rfind("optimized: frozen only (", 0) == 0)
            << name << ": " << note;
      }
    } else {
      ASSERT_EQ(model.notes().size(), 1u) << name;
      EXPECT_EQ(model.notes()[0].rfind("not optimized: ", 0), 0u) << model.notes()[0];
    }
    // Every verified candidate was timed against the stored module on the golden inputs.
    OptimizationReport report = model.optimization();
    EXPECT_GT(report.stored_ms, 0) << name;
    EXPECT_EQ(report.trials.size(), kOptimizationCandidates.size()) << name;
  }
  EXPECT_EQ(Model::load(fixture("classifier.pt")).summary().parameter_count,
            21797672);  // of the module as stored

  // Golden vectors that nothing reproduces: neither the optimized nor the frozen module is kept.
  Model tampered = Model::load(fixture("tampered.pt"));
  EXPECT_FALSE(tampered.optimized());
  ASSERT_EQ(tampered.notes().size(), 1u);
  EXPECT_EQ(tampered.notes()[0].rfind("not optimized: the optimized module misses the golden "
                                      "vectors (output: values differ beyond tolerance",
                                      0),
            0u)
      << tampered.notes()[0];

  // Without golden vectors the first forward's inputs verify it (PlainArchives tests).
  Model plain = Model::load(fixture("plain.pt"));
  EXPECT_FALSE(plain.optimized());
  EXPECT_EQ(plain.notes(),
            std::vector<std::string>{"no warm-up: the archive has no golden inputs to run"});
  EXPECT_FALSE(
      Model::load(fixture("classifier.pt"), LoadOptions().with_optimize(false)).optimized());
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

// Weights updates (torchship.export_weights): the new weights run, the model they were applied
// to is untouched, and an update of another model changes nothing.
TEST(WeightsUpdate, TheUpdatedModelComputesWithTheNewWeightsAndTheBaseKeepsItsOwn) {
  Model base = Model::load(fixture("classifier.pt"));
  WeightsUpdate update = WeightsUpdate::open(fixture("classifier.weights"));
  EXPECT_EQ(update.base_name(), "classifier.pt");
  EXPECT_EQ(update.forms(), std::vector<std::string>{"torchscript"});
  Model updated = base.with_weights(update);
  ASSERT_NE(updated.weights_update(), nullptr);
  EXPECT_EQ(base.weights_update(), nullptr);
  EXPECT_TRUE(check_golden(updated).ok());  // the update's own golden vectors

  auto logits = [](const Model& model) {
    return model.forward({model.image_input(fixture("chelsea.png"))}).toTensor();
  };
  at::Tensor retrained = read_npy(fixture("classifier_retrained_chelsea.npy"));
  at::Tensor original = read_npy(fixture("classifier_chelsea.npy"));
  ASSERT_GT(max_abs_diff(retrained, original), 1e-2);  // the two sets of weights differ
  EXPECT_TRUE(close_by_rule(retrained, logits(updated), base.archive()));
  EXPECT_TRUE(close_by_rule(original, logits(base), base.archive()));
  // An updated model takes the next update on the archive's own form.
  std::ifstream file(fixture("classifier.weights"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  Model again = updated.with_weights(WeightsUpdate::from_bytes(bytes, "classifier.weights"));
  EXPECT_TRUE(close_by_rule(retrained, logits(again), base.archive()));
}

TEST(WeightsUpdate, AnUpdateOfAnotherModelOrFileIsRefusedInOneLine) {
  WeightsUpdate update = WeightsUpdate::open(fixture("classifier.weights"));
  std::string message = error_message([&] { segmenter().with_weights(update); });
  EXPECT_EQ(message.rfind("cannot apply " + fixture("classifier.weights").string() + " to " +
                              fixture("segmentation.pt").string() +
                              ": the update is for another model (classifier.pt, weights index ",
                          0),
            0u)
      << message;
  EXPECT_EQ(error_message([&] { Archive::open(fixture("classifier.weights")); }),
            "cannot load " + fixture("classifier.weights").string() +
                ": this is a weights update (torchship.export_weights), not a model: load the "
                "archive it updates and apply it (Model::with_weights, torchship check "
                "--weights, or a server's new version)");
  EXPECT_EQ(error_message([&] { WeightsUpdate::open(fixture("classifier.pt")); }),
            "cannot load " + fixture("classifier.pt").string() +
                ": not a weights update (it has no torchship/weights.json; write one with "
                "torchship.export_weights)");
  EXPECT_EQ(error_message([&] { WeightsUpdate::from_bytes("", "nothing"); }),
            "cannot read the weights update nothing: it is empty");
}

}  // namespace
}  // namespace torchship
