// Archives: opening, zip directory checks, manifests (and their hostile forms), archives
// written by plain torch.jit.save.

#include <fstream>
#include <iterator>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "archive/crc32.h"
#include "fixtures.h"
#include "torchship/archive.h"
#include "torchship/error.h"
#include "torchship/golden.h"
#include "torchship/image.h"
#include "torchship/manifest.h"
#include "torchship/model.h"
#include "torchship/tensor_json.h"
#include "torchship/torchship.h"
#include "torchship/version.h"

namespace torchship {
namespace {

using nlohmann::json;
using testing::error_message;
using testing::fixture;
using testing::put_little;
using testing::scratch;

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
            "invalid manifest: 'task' must be one of classification, segmentation, detection, "
            "generic, got \"detect\"");
  EXPECT_EQ(error_message([] { Manifest::parse(R"({"format_version": 1, "precision": "fp16"})"); }),
            "invalid manifest: 'precision' must be one of fp32, bf16, int8, got \"fp16\"");
  EXPECT_EQ(Manifest::parse(R"({"format_version": 1})").precision, "fp32");
  EXPECT_EQ(error_message([] {
              Manifest::parse("{not json");
            }).rfind("invalid manifest: torchship.json is not valid JSON", 0),
            0u);
}

TEST(Manifest, ReadsTheDetectionSectionAndNamesWhatIsWrongInIt) {
  auto parse = [](const std::string& detection) {
    return Manifest::parse(
        R"({"format_version": 1, "task": "detection", "outputs": [{"name": "b"}, {"name": "s"},
            {"name": "k"}])" +
        (detection.empty() ? std::string() : ", \"detection\": " + detection) + "}");
  };
  auto spec = *parse(R"({"boxes": "b", "scores": "s", "keypoints": "k",
                         "keypoint_names": ["nose"], "box_format": "cxcywh",
                         "box_frame": "normalized"})")
                   .detection;
  EXPECT_EQ(spec.boxes, "b");
  EXPECT_EQ(spec.scores, "s");
  EXPECT_EQ(spec.labels, "");
  EXPECT_EQ(spec.keypoints, "k");
  EXPECT_EQ(spec.keypoint_names, (std::vector<std::string>{"nose"}));
  EXPECT_EQ(spec.box_format, BoxFormat::CXCYWH);
  EXPECT_EQ(spec.box_frame, BoxFrame::Normalized);
  auto defaults = *parse(R"({"boxes": "b", "scores": "s"})").detection;
  EXPECT_EQ(defaults.box_format, BoxFormat::XYXY);
  EXPECT_EQ(defaults.box_frame, BoxFrame::Pixels);

  EXPECT_EQ(error_message([&] { parse(""); }),
            "invalid manifest: task 'detection' needs a 'detection' section naming the boxes "
            "and scores outputs");
  EXPECT_EQ(error_message([&] { parse(R"({"boxes": "b"})"); }),
            "invalid manifest: missing field 'detection.scores'");
  EXPECT_EQ(error_message([&] { parse(R"({"boxes": "x", "scores": "s"})"); }),
            "invalid manifest: 'detection.boxes' must be the name of an output (b, s, k), got "
            "\"x\"");
  EXPECT_EQ(error_message([&] { parse(R"({"boxes": "b", "scores": "s", "box_format": "ltrb"})"); }),
            "invalid manifest: 'detection.box_format' must be one of xyxy, xywh, cxcywh, got "
            "\"ltrb\"");
  EXPECT_EQ(error_message([&] { parse(R"({"boxes": "b", "scores": "s", "box_frame": "image"})"); }),
            "invalid manifest: 'detection.box_frame' must be one of pixels, normalized, got "
            "\"image\"");
  EXPECT_EQ(
      error_message([&] { parse(R"({"boxes": "b", "scores": "s", "keypoint_names": ["a"]})"); }),
      "invalid manifest: 'detection.keypoint_names' must be absent when there is no "
      "keypoints output, got [\"a\"]");
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
  auto path = scratch("forged.pt");
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

std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(Archive, Crc32IsZipsChecksumInAnyPieces) {
  std::string text = "123456789";  // the check value every CRC-32/ISO-HDLC table lists
  EXPECT_EQ(crc32(0, text.data(), text.size()), 0xCBF43926u);
  EXPECT_EQ(crc32(crc32(0, text.data(), 5), text.data() + 5, 4), 0xCBF43926u);
  std::string long_text(1000, '\0');
  for (size_t i = 0; i < long_text.size(); ++i) long_text[i] = static_cast<char>(i * 7);
  uint32_t whole = crc32(0, long_text.data(), long_text.size());
  uint32_t pieces = 0;
  for (size_t at = 0; at < long_text.size(); at += 13) {
    pieces = crc32(pieces, long_text.data() + at, std::min<size_t>(13, long_text.size() - at));
  }
  EXPECT_EQ(whole, pieces);
}

TEST(Archive, ADamagedRecordIsRefusedByItsChecksum) {
  std::string zip = file_bytes(testing::fixture("classifier.pt"));
  // A byte in the middle of the largest record (the weights) flipped, as a bad disk would.
  size_t middle = zip.size() / 2;
  zip[middle] = static_cast<char>(zip[middle] ^ 0x40);
  auto path = scratch("damaged.pt");
  write_bytes(path, zip);
  std::string message = error_message([&] { Archive::open(path); });
  std::string start = "cannot load " + path.string() + ": the zip is truncated or corrupt: record ";
  EXPECT_EQ(message.substr(0, start.size()), start) << message;
  EXPECT_NE(message.find(" does not match its CRC-32 "), std::string::npos) << message;
  EXPECT_NE(message.find("(a damaged file, or one overwritten while it was being written?)"),
            std::string::npos)
      << message;
  std::filesystem::remove(path);
}

TEST(Archive, AFileOverwrittenHalfWayIsNeverLoaded) {
  // A deploy that rewrites model.pt in place and is killed half-way leaves the new file's
  // first half over the old file's tail, whose directory still ends the file.
  std::string old_file = file_bytes(testing::fixture("classifier.pt"));
  std::string new_file = file_bytes(testing::fixture("plain.pt"));
  auto path = scratch("half_written.pt");
  for (size_t written : {new_file.size() / 4, new_file.size() / 2, new_file.size() - 100}) {
    std::string torn = old_file;
    torn.replace(0, written, new_file.substr(0, written));
    write_bytes(path, torn);
    std::string message = error_message([&] { Model::load(path); });
    std::string start = "cannot load " + path.string() + ": the zip is truncated or corrupt";
    EXPECT_EQ(message.substr(0, start.size()), start) << written << ": " << message;
    // Cut off instead (truncated as it was written): no directory at the end.
    write_bytes(path, new_file.substr(0, written));
    EXPECT_EQ(error_message([&] { Model::load(path); }), start) << written;
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace torchship
