#include "torchship/archive.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <mutex>
#include <system_error>

#include <caffe2/serialize/inline_container.h>

#ifdef __linux__
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "archive/memory_file.h"
#include "archive/zip_directory.h"
#include "core/torch_compat.h"
#include "torchship/error.h"
#include "torchship/weights_update.h"

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
constexpr const char* kFormsFolder = "forms/";  // an archive of every form's archives

// The forms of an archive of every form, by their records' names; nothing else in forms/.
std::vector<ArchiveForm> forms_of(const std::vector<std::string>& records, const fs::path& path) {
  std::vector<ArchiveForm> forms;
  for (const auto& record : records) {
    if (record.rfind(kFormsFolder, 0) != 0) continue;
    std::string file = record.substr(std::char_traits<char>::length(kFormsFolder));
    if (file == "torchscript.pt") {
      forms.push_back({ModelFormat::TorchScript, record});
    } else if (file == "aoti.pt2") {
      forms.push_back({ModelFormat::AOTInductor, record});
    } else if (file == "openvino.ov") {
      forms.push_back({ModelFormat::OpenVINO, record});
    } else {
      throw bad_model("cannot load " + path.string() + ": unknown form " + record +
                      " (expected forms/torchscript.pt, forms/aoti.pt2 or forms/openvino.ov)");
    }
  }
  return forms;
}

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

// `file` read, `path` named in messages.
void check_file(const fs::path& file, const fs::path& path) {
  std::error_code ec;
  auto status = fs::status(file, ec);
  if (ec || !fs::exists(status)) reject(path, "no such file");
  if (fs::is_directory(status)) {
    reject(path, "is a directory, expected a .pt archive or a .pt2 package file");
  }
  auto size = fs::file_size(file, ec);
  if (ec) reject(path, "cannot read the file (" + ec.message() + ")");
  if (size == 0) reject(path, "the file is empty, expected a TorchScript archive");
  std::ifstream probe(file, std::ios::binary);
  if (!probe) reject(path, "cannot open the file for reading");

  std::string head = file_signature(file);
  if (head.rfind("PK\x03\x04", 0) == 0) {
    if (auto records = read_zip_directory(file, size)) {
      if (auto why = impossible_zip_sizes(*records, size)) reject(path, *why);
      if (auto why = damaged_zip_record(file, *records, size)) {
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

// What an archive's records say it holds.
struct RecordKinds {
  bool code = false;            // TorchScript's code/
  bool constants = false;       // TorchScript's constants.pkl
  bool compiled_model = false;  // an AOTInductor model
  bool ir = false;              // an OpenVINO graph
};

RecordKinds record_kinds(const std::vector<std::string>& records) {
  RecordKinds kinds;
  for (const auto& record : records) {
    if (record.rfind("code/", 0) == 0) kinds.code = true;
    if (record == "constants.pkl") kinds.constants = true;
    if (record.rfind(kAotiModelPrefix, 0) == 0) kinds.compiled_model = true;
    if (record == kOpenVinoGraphRecord) kinds.ir = true;
  }
  return kinds;
}

// The format the records hold. Only an archive of every form (forms and nothing else) keeps
// `forms`; any other archive's are cleared.
ModelFormat format_of(const RecordKinds& kinds, std::vector<ArchiveForm>& forms) {
  ModelFormat format = ModelFormat::TorchScript;
  if (kinds.compiled_model && !kinds.code) format = ModelFormat::AOTInductor;
  if (kinds.ir && !kinds.code && !kinds.compiled_model) format = ModelFormat::OpenVINO;
  if (!forms.empty() && !kinds.code && !kinds.compiled_model && !kinds.ir) {
    return ModelFormat::Auto;
  }
  forms.clear();
  return format;
}

// A package (.pt2, OpenVINO) keeps torchship's binary files in torchship/, beside its model.
bool in_package_folder(ModelFormat format, const std::string& record) {
  return format != ModelFormat::TorchScript && format != ModelFormat::Auto &&
         record.rfind(kPackageFolder, 0) == 0;
}

// extra/'s records without the prefix, and a package's torchship/ records as they are.
std::vector<std::string> extra_files_of(const std::vector<std::string>& records,
                                        ModelFormat format) {
  std::vector<std::string> extra_files;
  for (const auto& record : records) {
    if (record.rfind(kExtraPrefix, 0) == 0) {
      extra_files.push_back(record.substr(std::char_traits<char>::length(kExtraPrefix)));
    } else if (in_package_folder(format, record)) {
      extra_files.push_back(record);
    }
  }
  return extra_files;
}

// Why a zip taken for TorchScript, without code/ or constants.pkl, is not one.
const char* why_not_torchscript(caffe2::serialize::PyTorchStreamReader& zip) {
  bool is_checkpoint = zip.hasRecord("data.pkl");
  return is_checkpoint
             ? "this zip is a torch.save checkpoint, not a TorchScript module; export the "
               "model with torchship.export or torch.jit.save"
         : zip.hasRecord("archive_format")
             ? "this .pt2 package holds no AOTInductor model (no "
               "data/aotinductor/model/); torchship runs packages written by "
               "torchship.export(format=\"aoti\") or "
               "torch._inductor.aoti_compile_and_package"
             : "this zip is not a TorchScript archive (no code/ or constants.pkl)";
}

// The zip's record names; a directory that cannot be read is a damaged zip.
std::vector<std::string> all_records(caffe2::serialize::PyTorchStreamReader& zip,
                                     const fs::path& path) {
  try {
    return zip.getAllRecords();
  } catch (const c10::Error&) {
    reject(path, "the zip is truncated or corrupt");
  }
}

}  // namespace

namespace {

// An archive's file held open for as long as the archive: read through /proc/self/fd/N, it stays
// the file that was checked when the file at its path is replaced or removed meanwhile (a
// server's repository being updated, a weights update applied to a model loaded long before).
struct HeldFile {
  explicit HeldFile(int descriptor) : fd(descriptor) {}
  ~HeldFile() {
#ifdef __linux__
    ::close(fd);
#endif
  }
  int fd;
};

}  // namespace

Archive Archive::open(const fs::path& path) {
#ifdef __linux__
  // (a regular file only, opened without blocking on a FIFO; anything else, or a system
  // without /proc, is refused or read by its path as before)
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  struct stat status {};
  if (fd >= 0 && (::fstat(fd, &status) != 0 || !S_ISREG(status.st_mode))) {
    ::close(fd);
    fd = -1;
  }
  if (fd >= 0) {
    auto held = std::make_shared<HeldFile>(fd);
    fs::path through = "/proc/self/fd/" + std::to_string(fd);
    std::error_code ec;
    if (fs::exists(through, ec)) {
      Archive archive = open_file(through, path);
      archive.held_ = held;
      return archive;
    }
  }
#endif
  return open_file(path, path);
}

Archive Archive::from_bytes(std::string_view bytes, const std::string& name) {
  if (bytes.empty()) reject(name, "the archive is empty (0 bytes), expected a zip");
  MemoryFile held = MemoryFile::hold(bytes, "torchship-archive");
  Archive archive = open_file(held.path(), name);
  archive.held_ = std::make_shared<MemoryFile>(held);
  return archive;
}

Archive Archive::open_form(const ArchiveForm& form) const {
  auto bytes = read_record(form.record);
  if (!bytes) throw bad_model("cannot load " + path_.string() + ": it has no " + form.record);
  MemoryFile held = MemoryFile::hold(*bytes, std::string("torchship-") + format_id(form.format));
  bytes.reset();
  Archive archive = open_file(held.path(), path_);
  if (archive.format() != form.format) {
    throw bad_model("cannot load " + path_.string() + ": " + form.record + " is " +
                    format_name(archive.format()) + ", not " + format_name(form.format));
  }
  archive.held_ = std::make_shared<MemoryFile>(held);
  return archive;
}

// `file` read, `name` in messages. Messages about the file itself name `name`. A weights update
// opens only where one is expected (every record of it is an extra file).
Archive Archive::open_file(const fs::path& file, const fs::path& name, Expect expect) {
  const fs::path& path = name;
  check_file(file, name);

  Archive archive;
  archive.path_ = name;
  archive.file_ = file;
  try {
    archive.reader_ = std::make_shared<Reader>(file.string());
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    if (what.find("central directory") != std::string::npos ||
        what.find("failed reading zip") != std::string::npos) {
      reject(path, "the zip is truncated or corrupt");
    }
    // A zip, but not one PyTorch wrote (no "<name>/version" record and folder).
    reject(path, "this zip is not a TorchScript archive (it was not written by torch.jit.save)");
  }

  archive.records_ = all_records(archive.reader_->zip, path);
  bool is_update = std::find(archive.records_.begin(), archive.records_.end(),
                             kWeightsUpdateFile) != archive.records_.end();
  if (is_update != (expect == Expect::WeightsUpdate)) {
    reject(path, is_update ? "this is a weights update (torchship.export_weights), not a model: "
                             "load the archive it updates and apply it (Model::with_weights, "
                             "torchship check --weights, or a server's new version)"
                           : "not a weights update (it has no " + std::string(kWeightsUpdateFile) +
                                 "; write one with torchship.export_weights)");
  }
  if (is_update) {
    archive.weights_update_ = true;
    archive.extra_files_ = archive.records_;
    return archive;
  }
  RecordKinds kinds = record_kinds(archive.records_);
  archive.forms_ = forms_of(archive.records_, path);
  archive.format_ = format_of(kinds, archive.forms_);
  archive.extra_files_ = extra_files_of(archive.records_, archive.format_);
  if (archive.format_ == ModelFormat::TorchScript && (!kinds.code || !kinds.constants)) {
    reject(path, why_not_torchscript(archive.reader_->zip));
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
    case ModelFormat::Auto:
      return "every form";
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
    case ModelFormat::Auto:
      return "auto";
    default:
      return "torchscript";
  }
}

std::string Archive::extra_record(const std::string& name) const {
  return weights_update_ || in_package_folder(format_, name) ? name : kExtraPrefix + name;
}

std::optional<std::string> Archive::read_extra(const std::string& name) const {
  return read_record(extra_record(name));
}

Archive Archive::with_records(std::map<std::string, std::string> records) const {
  Archive copy = *this;
  for (const auto& [record, bytes] : records) {
    if (std::find(copy.records_.begin(), copy.records_.end(), record) != copy.records_.end()) {
      continue;
    }
    copy.records_.push_back(record);
    const std::string extra = kExtraPrefix;
    if (record.rfind(extra, 0) == 0) {
      copy.extra_files_.push_back(record.substr(extra.size()));
    } else if (in_package_folder(format_, record)) {
      copy.extra_files_.push_back(record);
    }
  }
  if (laid_over_) records.insert(laid_over_->begin(), laid_over_->end());  // the new ones win
  copy.laid_over_ = std::make_shared<const std::map<std::string, std::string>>(std::move(records));
  return copy;
}

std::optional<std::string> Archive::read_record(const std::string& record) const {
  if (laid_over_) {
    auto found = laid_over_->find(record);
    if (found != laid_over_->end()) return found->second;
  }
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
    auto archive_size = fs::file_size(file_, ec);
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
