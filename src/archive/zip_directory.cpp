#include "archive/zip_directory.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string_view>
#include <vector>

#include "archive/crc32.h"

namespace torchship {
namespace {

constexpr uint64_t kEndRecordSize = 22;
constexpr uint64_t kMaxComment = 65535;
constexpr uint64_t kLocalHeaderSize = 30;
constexpr uint64_t kDeflateMaxRatio = 1032;  // deflate's largest expansion of its input

uint64_t little(std::string_view bytes, size_t at, size_t count) {
  uint64_t value = 0;
  for (size_t i = count; i > 0; --i) value = value << 8 | static_cast<uint8_t>(bytes[at + i - 1]);
  return value;
}

std::string read_range(std::ifstream& in, uint64_t offset, uint64_t count) {
  std::string bytes(count, '\0');
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(bytes.data(), static_cast<std::streamsize>(count));
  bytes.resize(static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  in.clear();
  return bytes;
}

// ZIP64 sizes and offset: in the 0x0001 extra field, in this order, each present only where
// its 32-bit field is saturated.
void read_zip64_extra(std::string_view extra, ZipRecord& record) {
  for (size_t field = 0; field + 4 <= extra.size();) {
    uint64_t id = little(extra, field, 2);
    size_t size = little(extra, field + 2, 2);
    if (field + 4 + size > extra.size()) return;
    if (id == 0x0001) {
      size_t value = field + 4, end = field + 4 + size;
      for (uint64_t* wide :
           {&record.uncompressed_size, &record.compressed_size, &record.local_header_offset}) {
        if (*wide == 0xFFFFFFFF && value + 8 <= end) {
          *wide = little(extra, value, 8);
          value += 8;
        }
      }
    }
    field += 4 + size;
  }
}

}  // namespace

std::optional<std::vector<ZipRecord>> read_zip_directory(const std::filesystem::path& path,
                                                         uint64_t file_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in || file_size < kEndRecordSize) return std::nullopt;
  // The end-of-central-directory record, within the last 64 kB (its comment) of the file.
  uint64_t tail_size = std::min(file_size, kEndRecordSize + kMaxComment);
  std::string tail = read_range(in, file_size - tail_size, tail_size);
  auto end = tail.rfind(std::string_view("PK\x05\x06", 4));
  if (end == std::string::npos || end + kEndRecordSize > tail.size()) return std::nullopt;
  // The directory runs from its offset to the end record: miniz does not trust the size field
  // either, so a forged one must not hide the entries from the checks.
  uint64_t directory_end = file_size - tail_size + end;
  uint64_t entries = little(tail, end + 10, 2);
  uint64_t directory_size = little(tail, end + 12, 4);
  uint64_t directory_offset = little(tail, end + 16, 4);
  if (entries == 0xFFFF || directory_offset == 0xFFFFFFFF || directory_size == 0xFFFFFFFF) {
    // ZIP64: a locator just before the record points to the ZIP64 end record.
    if (end < 20 || tail.compare(end - 20, 4, std::string_view("PK\x06\x07", 4)) != 0) {
      return std::nullopt;
    }
    uint64_t zip64_end = little(tail, end - 20 + 8, 8);
    if (zip64_end > file_size) return std::nullopt;
    std::string record = read_range(in, zip64_end, 56);
    if (record.size() < 56 || record.compare(0, 4, std::string_view("PK\x06\x06", 4)) != 0) {
      return std::nullopt;
    }
    entries = little(record, 32, 8);
    directory_offset = little(record, 48, 8);
    directory_end = zip64_end;
  }
  if (directory_offset >= directory_end) return std::nullopt;  // the reader reports it corrupt
  std::string directory = read_range(in, directory_offset, directory_end - directory_offset);
  std::vector<ZipRecord> records;
  size_t at = 0;
  for (uint64_t i = 0; i < entries && at + 46 <= directory.size(); ++i) {
    if (directory.compare(at, 4, std::string_view("PK\x01\x02", 4)) != 0) return std::nullopt;
    ZipRecord record;
    record.method = little(directory, at + 10, 2);
    record.crc32 = static_cast<uint32_t>(little(directory, at + 16, 4));
    record.compressed_size = little(directory, at + 20, 4);
    record.uncompressed_size = little(directory, at + 24, 4);
    size_t name_size = little(directory, at + 28, 2);
    size_t extra_size = little(directory, at + 30, 2);
    size_t comment_size = little(directory, at + 32, 2);
    record.local_header_offset = little(directory, at + 42, 4);
    if (at + 46 + name_size + extra_size > directory.size()) return std::nullopt;
    record.name = directory.substr(at + 46, name_size);
    read_zip64_extra(std::string_view(directory.data() + at + 46 + name_size, extra_size), record);
    records.push_back(std::move(record));
    at += 46 + name_size + extra_size + comment_size;
  }
  return records;
}

std::optional<std::string> impossible_zip_sizes(const std::vector<ZipRecord>& records,
                                                uint64_t file_size) {
  for (const auto& record : records) {
    bool possible = record.method == 0 ? record.uncompressed_size <= file_size
                                       : record.compressed_size <= file_size &&
                                             record.uncompressed_size <=
                                                 record.compressed_size * kDeflateMaxRatio + 1024;
    if (!possible) {
      return "the zip's directory says record " + record.name + " is " +
             std::to_string(record.uncompressed_size) + " bytes, more than the " +
             std::to_string(file_size) + "-byte archive can hold (a forged or corrupt zip)";
    }
  }
  return std::nullopt;
}

std::optional<std::string> damaged_zip_record(const std::filesystem::path& path,
                                              const std::vector<ZipRecord>& records,
                                              uint64_t file_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;  // the reader says why
  std::vector<char> chunk(size_t{1} << 20);
  for (const auto& record : records) {
    if (record.method != 0) continue;
    auto outside = [&] {
      return "record " + record.name + " lies outside the " + std::to_string(file_size) +
             "-byte file (cut off, or overwritten while it was being written?)";
    };
    if (record.local_header_offset > file_size ||
        file_size - record.local_header_offset < kLocalHeaderSize) {
      return outside();
    }
    std::string header = read_range(in, record.local_header_offset, kLocalHeaderSize);
    if (header.size() < kLocalHeaderSize ||
        header.compare(0, 4, std::string_view("PK\x03\x04", 4)) != 0) {
      return "record " + record.name + " has no local header where the directory says (a file " +
             "overwritten while it was being written?)";
    }
    uint64_t data = record.local_header_offset + kLocalHeaderSize + little(header, 26, 2) +
                    little(header, 28, 2);
    if (data > file_size || file_size - data < record.uncompressed_size) return outside();
    in.seekg(static_cast<std::streamoff>(data));
    uint32_t crc = 0;
    for (uint64_t left = record.uncompressed_size; left > 0;) {
      auto count = static_cast<std::streamsize>(std::min<uint64_t>(left, chunk.size()));
      if (!in.read(chunk.data(), count)) return outside();
      crc = crc32(crc, chunk.data(), static_cast<size_t>(count));
      left -= static_cast<uint64_t>(count);
    }
    if (crc != record.crc32) {
      char text[64];
      std::snprintf(text, sizeof text, "CRC-32 %08x, its bytes give %08x", record.crc32, crc);
      return "record " + record.name + " does not match its " + text +
             " (a damaged file, or one overwritten while it was being written?)";
    }
  }
  return std::nullopt;
}

}  // namespace torchship
