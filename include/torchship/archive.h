// A torchship archive on disk: a TorchScript zip (.pt), an AOTInductor package (.pt2), an
// OpenVINO archive (OpenVINO IR in a zip laid out as PyTorch's), optionally carrying a manifest
// and golden vectors, or an archive of every form (format="auto") holding such archives.
// Opening it validates the container without loading the model.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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
  Auto,         // every form that exported, each a complete archive of its own (forms/)
};
const char* format_name(ModelFormat format);  // "TorchScript", "AOTInductor", "OpenVINO"
// The name torchship.export and --json output use: "torchscript", "aoti", "openvino", "auto".
const char* format_id(ModelFormat format);

// One form in an archive of every form: its format and its record (forms/openvino.ov).
struct ArchiveForm {
  ModelFormat format = ModelFormat::TorchScript;
  std::string record;
};

class Archive {
 public:
  // Throws Error(BadModel) for a missing or empty file, a file that is not a zip, a truncated
  // zip, a zip that is none of the three forms, or an invalid manifest.
  static Archive open(const std::filesystem::path& path);
  // An archive held in memory (embedded in the application, decrypted, downloaded), checked as
  // open() checks a file; `name` names it in messages. Nothing is written to disk where the
  // system has anonymous files (Linux): the loaders read an in-memory copy of the bytes, and an
  // AOTInductor package's compiled library is loaded from one too (docs/cpp-api.md).
  static Archive from_bytes(std::string_view bytes, const std::string& name);

  // The name messages give it; file() is where its bytes are read from, valid while a copy of
  // the archive lives: on Linux the file as opened (/proc/self/fd/N, even if the path is then
  // replaced or removed), elsewhere the path, and for an archive from bytes and a form of an
  // archive of every form, an in-memory copy.
  const std::filesystem::path& path() const { return path_; }
  const std::filesystem::path& file() const { return file_; }
  ModelFormat format() const { return format_; }
  // The forms of an archive of every form (ModelFormat::Auto), in the order they were written.
  const std::vector<ArchiveForm>& forms() const { return forms_; }
  // One of forms() as an archive of its own, held in memory (nothing is written to disk where
  // the system has anonymous files), named by this archive's path. Throws Error(BadModel) as
  // open() does.
  Archive open_form(const ArchiveForm& form) const;
  const std::optional<Manifest>& manifest() const { return manifest_; }
  // Names of the extra files in the archive ("torchship.json", ...).
  const std::vector<std::string>& extra_files() const { return extra_files_; }
  // The content of an extra file, or nullopt when the archive has none by that name.
  std::optional<std::string> read_extra(const std::string& name) const;
  bool has_golden() const;
  // Every record in the zip, named relative to its top folder ("data/aotinductor/model/...").
  const std::vector<std::string>& records() const { return records_; }
  std::optional<std::string> read_record(const std::string& name) const;
  // The record an extra file is kept in ("extra/torchship.json" in a TorchScript archive).
  std::string extra_record(const std::string& name) const;
  // A copy that reads `records` (named as records() names them) in place of its own or beside
  // them: how a weights update is laid over the archive it updates (weights_update.h).
  Archive with_records(std::map<std::string, std::string> records) const;

 private:
  friend class WeightsUpdate;
  struct Reader;
  enum class Expect { Model, WeightsUpdate };
  static Archive open_file(const std::filesystem::path& file, const std::filesystem::path& name,
                           Expect expect = Expect::Model);
  std::filesystem::path path_, file_;
  std::shared_ptr<const void> held_;  // keeps file_ alive where it is an in-memory copy
  std::vector<ArchiveForm> forms_;
  std::shared_ptr<Reader> reader_;
  ModelFormat format_ = ModelFormat::TorchScript;
  std::optional<Manifest> manifest_;
  std::vector<std::string> records_;
  std::vector<std::string> extra_files_;
  bool weights_update_ = false;
  std::shared_ptr<const std::map<std::string, std::string>> laid_over_;  // with_records()
};

}  // namespace torchship
