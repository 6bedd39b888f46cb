// A zip's central directory, read by torchship before libtorch's reader (miniz) sees the file:
// - the sizes it claims for its records are checked before anything is allocated for them:
//   PyTorchStreamReader's constructor reads the "version" record into a buffer of whatever size
//   the directory states, 4 GB for a 2 kB forged archive;
// - each stored record's bytes are checked against the CRC-32 the directory holds, which
//   libtorch's reader does not do: a file cut off or overwritten while it was being written
//   (a deploy killed half-way, a repository polled mid-copy) is refused instead of loaded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace torchship {

struct ZipRecord {
  std::string name;
  uint64_t method = 0;  // 0: stored, 8: deflated
  uint64_t compressed_size = 0, uncompressed_size = 0;
  uint64_t local_header_offset = 0;
  uint32_t crc32 = 0;
};

// The records the central directory of the zip at `path` (of `file_size` bytes) lists; nullopt
// when there is no directory to read (the reader says why).
std::optional<std::vector<ZipRecord>> read_zip_directory(const std::filesystem::path& path,
                                                         uint64_t file_size);

// Why the records cannot be what they claim: one larger than a stored record can be (the file)
// or than deflate can expand its compressed bytes to. nullopt when the sizes are possible.
std::optional<std::string> impossible_zip_sizes(const std::vector<ZipRecord>& records,
                                                uint64_t file_size);

// The first stored record whose bytes lie outside the file or do not match its CRC-32, as a
// sentence; nullopt when all match. Deflated records are left to the reader (PyTorch writes
// none).
std::optional<std::string> damaged_zip_record(const std::filesystem::path& path,
                                              const std::vector<ZipRecord>& records,
                                              uint64_t file_size);

}  // namespace torchship
