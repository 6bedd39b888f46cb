#include "torchship/archive.h"

#include <array>
#include <fstream>
#include <mutex>
#include <system_error>

#include <caffe2/serialize/inline_container.h>

#include "archive/zip_directory.h"
#include "core/torch_compat.h"
#include "torchship/error.h"

namespace torchship {
namespace fs = std::filesystem;

struct Archive::Reader {
  explicit Reader(const std::string& file) : zip(file) {}
  std::mutex mutex;  // PyTorchStreamReader locks internally too; this guards our own reads
  caffe2::serialize::PyTorchStreamReader zip;
};

namespace {

constexpr const char* kExtraPrefix = "extra/";
constexpr const char* kPackageFolder = "torchship/";  // a .pt2's binary torchship files
constexpr const char* kAotiModelPrefix = "data/aotinductor/model/";

// The first bytes tell a zip from a legacy pickle checkpoint or anything else.
std::string file_signature(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::array<char, 4> head{};
  in.read(head.data(), head.size());
  return std::string(head.data(), static_cast<size_t>(in.gcount()));
}

[[noreturn]] void reject(const fs::path& path, const std::string& why) {
  throw bad_model("cannot load " + path.string() + ": " + why);
}

void check_file(const fs::path& path) {
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) reject(path, "no such file");
  if (fs::is_directory(status)) {
    reject(path, "is a directory, expected a .pt archive or a .pt2 package file");
  }
  auto size = fs::file_size(path, ec);
  if (ec) reject(path, "cannot read the file (" + ec.message() + ")");
  if (size == 0) reject(path, "the file is empty, expected a TorchScript archive");
  std::ifstream probe(path, std::ios::binary);
  if (!probe) reject(path, "cannot open the file for reading");

  std::string head = file_signature(path);
  if (head.rfind("PK\x03\x04", 0) == 0) {
    if (auto records = read_zip_directory(path, size)) {
      if (auto why = impossible_zip_sizes(*records, size)) reject(path, *why);
      if (auto why = damaged_zip_record(path, *records, size)) {
        reject(path, "the zip is truncated or corrupt: " + *why);
      }
    }
    return;
  }
  if (!head.empty() && static_cast<unsigned char>(head[0]) == 0x80) {
    reject(path,
           "this is a legacy pickle checkpoint (torch.save), not a TorchScript archive; export the "
           "model with torchship.export or torch.jit.save");
  }
  reject(path, "not a TorchScript archive (expected a zip file written by torch.jit.save)");
}

}  // namespace

Archive Archive::open(const fs::path& path) {
  check_file(path);

  Archive archive;
  archive.path_ = path;
  try {
    archive.reader_ = std::make_shared<Reader>(path.string());
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    if (what.find("central directory") != std::string::npos ||
        what.find("failed reading zip") != std::string::npos) {
      reject(path, "the zip is truncated or corrupt");
    }
    // A zip, but not one PyTorch wrote (no "<name>/version" record and folder).
    reject(path, "this zip is not a TorchScript archive (it was not written by torch.jit.save)");
  }

  try {
    archive.records_ = archive.reader_->zip.getAllRecords();
  } catch (const c10::Error&) {
    reject(path, "the zip is truncated or corrupt");
  }
  bool has_code = false;
  bool has_constants = false;
  bool has_compiled_model = false;
  bool has_ir = false;
  for (const auto& record : archive.records_) {
    if (record.rfind("code/", 0) == 0) has_code = true;
    if (record == "constants.pkl") has_constants = true;
    if (record.rfind(kAotiModelPrefix, 0) == 0) has_compiled_model = true;
    if (record == kOpenVinoGraphRecord) has_ir = true;
  }
  if (has_compiled_model && !has_code) archive.format_ = ModelFormat::AOTInductor;
  if (has_ir && !has_code && !has_compiled_model) archive.format_ = ModelFormat::OpenVINO;
  for (const auto& record : archive.records_) {
    if (record.rfind(kExtraPrefix, 0) == 0) {
      archive.extra_files_.push_back(record.substr(std::char_traits<char>::length(kExtraPrefix)));
    } else if (archive.format_ != ModelFormat::TorchScript &&
               record.rfind(kPackageFolder, 0) == 0) {
      archive.extra_files_.push_back(record);
    }
  }
  if (archive.format_ == ModelFormat::TorchScript && (!has_code || !has_constants)) {
    bool is_checkpoint = archive.reader_->zip.hasRecord("data.pkl");
    reject(path, is_checkpoint
                     ? "this zip is a torch.save checkpoint, not a TorchScript module; export the "
                       "model with torchship.export or torch.jit.save"
                 : archive.reader_->zip.hasRecord("archive_format")
                     ? "this .pt2 package holds no AOTInductor model (no "
                       "data/aotinductor/model/); torchship runs packages written by "
                       "torchship.export(format=\"aoti\") or "
                       "torch._inductor.aoti_compile_and_package"
                     : "this zip is not a TorchScript archive (no code/ or constants.pkl)");
  }

  if (auto text = archive.read_extra(kManifestFile)) {
    try {
      archive.manifest_ = Manifest::parse(*text);
    } catch (const Error& e) {
      reject(path, e.what());
    }
  }
  return archive;
}

const char* format_name(ModelFormat format) {
  switch (format) {
    case ModelFormat::AOTInductor:
      return "AOTInductor";
    case ModelFormat::OpenVINO:
      return "OpenVINO";
    default:
      return "TorchScript";
  }
}

const char* format_id(ModelFormat format) {
  switch (format) {
    case ModelFormat::AOTInductor:
      return "aoti";
    case ModelFormat::OpenVINO:
      return "openvino";
    default:
      return "torchscript";
  }
}

std::optional<std::string> Archive::read_extra(const std::string& name) const {
  bool in_package_folder =
      format_ != ModelFormat::TorchScript && name.rfind(kPackageFolder, 0) == 0;
  return read_record(in_package_folder ? name : kExtraPrefix + name);
}

std::optional<std::string> Archive::read_record(const std::string& record) const {
  // Messages name an extra file as torchship writes it ("torchship.json").
  std::string name = record.rfind(kExtraPrefix, 0) == 0
                         ? record.substr(std::char_traits<char>::length(kExtraPrefix))
                         : record;
  std::lock_guard<std::mutex> lock(reader_->mutex);
  try {
    if (!reader_->zip.hasRecord(record)) return std::nullopt;
#if TORCHSHIP_TORCH_AT_LEAST(2, 1)
    // A record's size comes from the zip's directory: torch stores records uncompressed, so one
    // larger than the archive is a forged directory, refused before its buffer is allocated.
    std::error_code ec;
    auto archive_size = fs::file_size(path_, ec);
    size_t record_size = reader_->zip.getRecordSize(record);
    if (!ec && record_size > archive_size) {
      throw bad_model("cannot read " + name + " from " + path_.string() + ": the zip says it is " +
                      std::to_string(record_size) + " bytes, the archive has " +
                      std::to_string(archive_size));
    }
#endif
    auto [data, size] = reader_->zip.getRecord(record);
    return std::string(static_cast<const char*>(data.get()), size);
  } catch (const c10::Error& e) {
    throw bad_model("cannot read " + name + " from " + path_.string() +
                    ": the zip is truncated or corrupt");
  }
}

bool Archive::has_golden() const {
  return std::find(extra_files_.begin(), extra_files_.end(), kGoldenIndexFile) !=
         extra_files_.end();
}

}  // namespace torchship
