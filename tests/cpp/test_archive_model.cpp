// Archives, manifests, images and Model: parity with the Python reference outputs the fixture
// script recorded, and the exact errors users see.
#include <fstream>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include "fixtures.h"
#include "torchship/torchship.h"

namespace torchship {
namespace {

using testing::error_message;
using testing::fixture;
using testing::max_abs_diff;

constexpr double kTolerance = 1e-4;

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
    EXPECT_LE(max_abs_diff(expected, logits), kTolerance) << name;

    auto top = classifier().classify(image, 3);
    ASSERT_EQ(top.size(), 3u);
    EXPECT_EQ(top[0].index, expected.argmax().item<int64_t>()) << name;
    EXPECT_EQ(top[0].label, classifier().manifest()->label(top[0].index));
    EXPECT_NEAR(top[0].score, expected.softmax(1).max().item<double>(), 1e-5);
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
    const char* names[] = {"logits", "labels", "overlay"};
    for (size_t i = 0; i < 3; ++i) {
      at::Tensor expected =
          read_npy(fixture("segmentation_" + test_case.name + "_" + names[i] + ".npy"));
      double tolerance = i == 0 ? kTolerance : 0.0;  // labels and overlay exactly
      EXPECT_LE(max_abs_diff(expected, outputs[i].toTensor()), tolerance)
          << test_case.name << " " << names[i];
    }
  }
}

TEST(Model, SegmentReturnsLabelsAndOverlayOfOneImage) {
  Segmentation result = segmenter().segment(fixture("chelsea.png"));
  at::Tensor labels = read_npy(fixture("segmentation_single_labels.npy")).squeeze(0);
  at::Tensor overlay = read_npy(fixture("segmentation_single_overlay.npy")).squeeze(0);
  EXPECT_TRUE(at::equal(result.labels, labels));
  EXPECT_TRUE(at::equal(result.overlay, overlay));
  EXPECT_EQ(result.logits.sizes(), (std::vector<int64_t>{21, 300, 451}));
}

TEST(Model, DetectorWithTorchvisionOperatorsMatchesPython) {
  // The archive calls torchvision::nms and torchvision::roi_align: loading finds torchvision's
  // operator library on its own.
  Model model = Model::load(fixture("detection.pt"));
  c10::IValue output =
      model.forward({input_from_spec(model, 0, fixture("astronaut_small.png").string())});
  auto detections = output.toList().get(0).toGenericDict();
  for (std::string key : {"boxes", "scores", "labels"}) {
    at::Tensor expected = read_npy(fixture("detection_" + key + ".npy"));
    EXPECT_GT(expected.size(0), 0);
    EXPECT_LE(max_abs_diff(expected, detections.at(key).toTensor()), kTolerance) << key;
  }
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
  if (torch::cuda::is_available()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_EQ(
      error_message([] { Model::load(fixture("plain.pt"), LoadOptions().with_device("cuda")); }),
      "device 'cuda' requested, but " +
          std::string(at::hasCUDA() ? "no CUDA device is visible"
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
                " is not an image OpenCV can decode (expected PNG, JPEG, BMP, TIFF, "
                "WebP, PNM, ...)");
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
                               " is not an image OpenCV can decode (expected PNG, JPEG, BMP, "
                               "TIFF, WebP, PNM, ...)");
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

using testing::fixture;
using testing::trained;

TEST(TrainedModel, LibraryBatchesGivePythonsPredictionsOnTheWholeTestSet) {
  Model model = Model::load(trained("fashion_mnist.pt"));
  ASSERT_TRUE(model.manifest()->batch_dim);
  EXPECT_EQ(model.manifest()->labels.at(9), "Ankle boot");
  at::Tensor python = read_npy(trained("fashion_mnist_python_predictions.npy"));
  ASSERT_EQ(python.size(0), 10000);

  std::vector<c10::IValue> images;
  for (int i = 0; i < 10000; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "fashion_mnist_test/%05d.png", i);
    images.push_back(model.image_input(trained(name)));
  }
  auto predictions = model.classify_batch(images, 1, 256);
  ASSERT_EQ(predictions.size(), 10000u);
  int64_t differ = 0;
  for (int i = 0; i < 10000; ++i) differ += predictions[i][0].index != python[i].item<int64_t>();
  EXPECT_EQ(differ, 0) << "predictions that differ from Python's";
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
  GoldenReport report = check_golden(Model::load(fixture("classifier.pt")));
  ASSERT_EQ(report.cases.size(), 1u);
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.cases[0].leaves.at(0).path, "output");
  EXPECT_LE(report.cases[0].leaves.at(0).max_abs, 1e-4);
}

TEST(Golden, AlteredVectorsFailTheCheckAndTheCheckedLoad) {
  GoldenReport report = check_golden(Model::load(fixture("tampered.pt")));
  EXPECT_FALSE(report.ok());
  EXPECT_DOUBLE_EQ(report.cases[0].leaves[0].max_abs, 0.5);
  auto path = fixture("tampered.pt");
  EXPECT_EQ(error_message([&] { Model::load(path, LoadOptions().with_golden_check()); }),
            "golden check failed for " + path.string() +
                ": case 0, output: values differ beyond tolerance (max abs error 0.5)");
  EXPECT_EQ(error_message([] { check_golden(Model::load(fixture("plain.pt"))); }),
            fixture("plain.pt").string() +
                " has no golden vectors (export it with torchship.export to record them)");
}

}  // namespace
}  // namespace torchship

namespace torchship {
namespace {

using testing::fixture;

TEST(Optimization, KeptOnlyWhenTheGoldenVectorsStillHold) {
  Model classifier = Model::load(fixture("classifier.pt"));
  EXPECT_TRUE(classifier.optimized());
  EXPECT_TRUE(classifier.notes().empty());
  EXPECT_EQ(classifier.summary().parameter_count, 21797672);  // of the module as stored

  // LR-ASPP's optimize_for_inference kernels move its logits beyond the golden tolerance;
  // freezing alone keeps them, so it runs frozen.
  Model segmentation = Model::load(fixture("segmentation.pt"));
  EXPECT_TRUE(segmentation.optimized());
  ASSERT_EQ(segmentation.notes().size(), 1u);
  EXPECT_EQ(segmentation.notes()[0].rfind(
                "optimized by freezing only: optimize_for_inference misses the golden vectors "
                "(output[0]: values differ beyond tolerance",
                0),
            0u);

  Model plain = Model::load(fixture("plain.pt"));
  EXPECT_FALSE(plain.optimized());
  EXPECT_EQ(plain.notes().at(0),
            "not optimized: the archive has no golden vectors to verify an optimized module "
            "against");
  EXPECT_FALSE(
      Model::load(fixture("classifier.pt"), LoadOptions().with_optimize(false)).optimized());
}

}  // namespace
}  // namespace torchship
