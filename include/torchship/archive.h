// A torchship archive on disk: a TorchScript zip, optionally carrying a manifest and golden
// vectors as extra files. Opening it validates the container without loading the model.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "torchship/manifest.h"

namespace torchship {

// Names of the extra files torchship writes (torch.jit.save stores them under "extra/").
constexpr const char* kManifestFile = "torchship.json";
constexpr const char* kGoldenIndexFile = "torchship/golden/index.json";

class Archive {
 public:
  // Throws Error(BadModel) for a missing or empty file, a file that is not a zip, a truncated
  // zip, a zip that is not TorchScript, or an invalid manifest.
  static Archive open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const std::optional<Manifest>& manifest() const { return manifest_; }
  // Names of the extra files in the archive ("torchship.json", ...).
  const std::vector<std::string>& extra_files() const { return extra_files_; }
  // The content of an extra file, or nullopt when the archive has none by that name.
  std::optional<std::string> read_extra(const std::string& name) const;
  bool has_golden() const;

 private:
  struct Reader;
  std::filesystem::path path_;
  std::shared_ptr<Reader> reader_;
  std::optional<Manifest> manifest_;
  std::vector<std::string> extra_files_;
};

}  // namespace torchship
