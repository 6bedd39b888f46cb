// Archives, manifests, images and Model: parity with the Python reference outputs the fixture
// script recorded, and the exact errors users see.
#include <fstream>
#include <iostream>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include "fixtures.h"
#include "torchship/torchship.h"

namespace torchship {
namespace {

using testing::argmax_agrees;
using testing::close_by_rule;
using testing::error_message;
using testing::fixture;
using testing::max_abs_diff;
using testing::rule_atol;

// Models load once per test binary: loading ResNet34 costs a few hundred milliseconds.
const Model& classifier() {
  static Model model = Model::load(fixture("classifier.pt"));
  return model;
}
const Model& segmenter() {
  static Model model = Model::load(fixture("segmentation.pt"));
  return model;
}

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

TEST(Image, DecodesIntoManifestColourAndSizeSharingOpenCVsBuffer) {
  auto path = fixture("chelsea.png");
  at::Tensor rgb = decode_image(path);
  EXPECT_EQ(rgb.sizes(), (std::vector<int64_t>{300, 451, 3}));
  EXPECT_EQ(rgb.scalar_type(), at::kByte);
  at::Tensor bgr = decode_image(path, ImageSpec{ColorOrder::BGR, {}});
  EXPECT_TRUE(at::equal(rgb.flip({2}), bgr));
  ImageSpec small{ColorOrder::Gray, {ResizeMode::Stretch, 28, 28, Interpolation::Area}};
  EXPECT_EQ(decode_image(path, small).sizes(), (std::vector<int64_t>{28, 28, 1}));
  // Resizing an already decoded tensor gives what decoding with the policy gives.
  ImageSpec resized{ColorOrder::RGB, {ResizeMode::Stretch, 224, 224, Interpolation::Linear}};
  EXPECT_TRUE(at::equal(prepare_image(rgb, resized), decode_image(path, resized)));
}

TEST(Image, DecodesBytesAndRejectsWhatIsNotAnImage) {
  std::ifstream in(fixture("random_0.png"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(decode_image_bytes(bytes).sizes(), (std::vector<int64_t>{97, 131, 3}));
  auto text = fixture("not_an_image.png");
  EXPECT_EQ(error_message([&] { decode_image(text); }),
            text.string() +
                " is not an image torchship can decode (expected PNG, JPEG, BMP, TIFF, "
                "WebP, PNM, PAM, PFM, Sun raster, Radiance HDR, JPEG 2000 or OpenEXR)");
  EXPECT_EQ(error_message([] { decode_image_bytes(std::string_view()); }),
            "image bytes is empty, expected an image");
}

TEST(Image, ExactDecodeOfAPhotoIsPythonsCv2PathAndReducedStaysClose) {
  auto photo = fixture("photo_1920x1080.jpg");
  at::Tensor python = read_npy(fixture("photo_1920x1080_224.npy"));
  ImageSpec spec{ColorOrder::RGB, {ResizeMode::Stretch, 224, 224, Interpolation::Linear}};
  EXPECT_TRUE(at::equal(decode_image(photo, spec), python));
  // 1920x1080 -> 480x270 in the decoder (factor 4 keeps both sides >= 224), then 224x224.
  at::Tensor reduced = decode_image(photo, spec, Decode::Reduced);
  ASSERT_EQ(reduced.sizes(), python.sizes());
  EXPECT_FALSE(at::equal(reduced, python));
  double mean_error = (reduced.to(at::kFloat) - python.to(at::kFloat)).abs().mean().item<double>();
  EXPECT_LT(mean_error, 4.0) << "mean absolute difference in 0..255 levels";
  // PNGs, and JPEGs not larger than twice the target, decode exactly either way.
  auto png = fixture("chelsea.png");
  EXPECT_TRUE(at::equal(decode_image(png, spec, Decode::Reduced), decode_image(png, spec)));
  ImageSpec large{ColorOrder::RGB, {ResizeMode::Stretch, 600, 1000, Interpolation::Linear}};
  EXPECT_TRUE(at::equal(decode_image(photo, large, Decode::Reduced), decode_image(photo, large)));
}

TEST(Image, BatchesDecodeAheadInOrderAndReportUndecodableFiles) {
  const Model& model = classifier();
  std::vector<std::filesystem::path> paths = {fixture("chelsea.png"), fixture("not_an_image.png"),
                                              fixture("random_0.png"), fixture("random_1.png"),
                                              fixture("photo_1920x1080.jpg")};
  for (bool prefetch : {true, false}) {
    ImageBatches batches(model, paths, 2, Decode::Exact, prefetch);
    std::vector<std::filesystem::path> seen;
    std::vector<std::string> failures;
    size_t count = 0;
    while (auto batch = batches.next()) {
      ++count;
      ASSERT_EQ(batch->paths.size(), batch->inputs.size());
      for (size_t i = 0; i < batch->paths.size(); ++i) {
        seen.push_back(batch->paths[i]);
        EXPECT_TRUE(
            batch->inputs[i].toTensor().equal(model.image_input(batch->paths[i]).toTensor()));
      }
      for (const auto& failure : batch->failures) failures.push_back(failure.message);
    }
    EXPECT_EQ(count, 3u);
    EXPECT_EQ(seen, (std::vector<std::filesystem::path>{paths[0], paths[2], paths[3], paths[4]}));
    ASSERT_EQ(failures.size(), 1u);
    EXPECT_EQ(failures[0], paths[1].string() +
                               " is not an image torchship can decode (expected PNG, JPEG, "
                               "BMP, TIFF, WebP, PNM, PAM, PFM, Sun raster, Radiance HDR, JPEG "
                               "2000 or OpenEXR)");
  }
}

TEST(Image, WritesWhatItReads) {
  auto path = std::filesystem::temp_directory_path() / "torchship_test_overlay.png";
  at::Tensor image = decode_image(fixture("random_1.png"));
  write_image(path, image);
  EXPECT_TRUE(at::equal(decode_image(path), image));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace torchship

namespace torchship {
namespace {

using testing::argmax_agrees;
using testing::error_message;
using testing::fixture;
using testing::rule_atol;
using testing::trained;

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

}  // namespace
}  // namespace torchship

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

namespace torchship {
namespace {

using testing::fixture;

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

}  // namespace
}  // namespace torchship
