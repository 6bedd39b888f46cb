// A torchship archive on disk: a TorchScript zip (.pt), an AOTInductor package (.pt2) or an
// OpenVINO archive (OpenVINO IR in a zip laid out as PyTorch's), optionally carrying a manifest
// and golden vectors. Opening it validates the container without
// loading the model.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "torchship/manifest.h"

namespace torchship {

// Names of the extra files torchship writes. torch.jit.save stores them under "extra/"; in a
// .pt2 package (and an OpenVINO archive, laid out alike) the manifest is under "extra/" and the
// golden vectors, which are binary, in a "torchship/" folder beside it (torch's package loader
// reads every extra/ file as text).
constexpr const char* kManifestFile = "torchship.json";
constexpr const char* kGoldenIndexFile = "torchship/golden/index.json";
// The record that makes a zip an OpenVINO archive: its IR's graph (model.bin beside it).
constexpr const char* kOpenVinoGraphRecord = "openvino/model.xml";

// How the model in an archive is stored, and so which backend runs it.
enum class ModelFormat {
  TorchScript,  // torch.jit.save: code and pickled constants, run by TorchScript's interpreter
  AOTInductor,  // torch.export + AOTInductor: a compiled shared library and its weights
  OpenVINO,     // torch.export + openvino.convert_model: OpenVINO IR (graph and weights)
};
const char* format_name(ModelFormat format);  // "TorchScript", "AOTInductor", "OpenVINO"
// The name torchship.export and --json output use: "torchscript", "aoti", "openvino".
const char* format_id(ModelFormat format);

class Archive {
 public:
  // Throws Error(BadModel) for a missing or empty file, a file that is not a zip, a truncated
  // zip, a zip that is none of the three forms, or an invalid manifest.
  static Archive open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  ModelFormat format() const { return format_; }
  const std::optional<Manifest>& manifest() const { return manifest_; }
  // Names of the extra files in the archive ("torchship.json", ...).
  const std::vector<std::string>& extra_files() const { return extra_files_; }
  // The content of an extra file, or nullopt when the archive has none by that name.
  std::optional<std::string> read_extra(const std::string& name) const;
  bool has_golden() const;
  // Every record in the zip, named relative to its top folder ("data/aotinductor/model/...").
  const std::vector<std::string>& records() const { return records_; }
  std::optional<std::string> read_record(const std::string& name) const;

 private:
  struct Reader;
  std::filesystem::path path_;
  std::shared_ptr<Reader> reader_;
  ModelFormat format_ = ModelFormat::TorchScript;
  std::optional<Manifest> manifest_;
  std::vector<std::string> records_;
  std::vector<std::string> extra_files_;
};

}  // namespace torchship
