// The sizes a zip's central directory claims for its records, checked before libtorch's reader
// (miniz) allocates them: PyTorchStreamReader's constructor reads the "version" record into a
// buffer of whatever size the directory states, 4 GB for a 2 kB forged archive.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace torchship {

// Why the zip at `path` (of `file_size` bytes) cannot be what it claims: a record larger than a
// stored record can be (the file) or than deflate can expand its compressed bytes to. nullopt
// when the sizes are possible, or when there is no directory to read (the reader says why).
std::optional<std::string> impossible_zip_sizes(const std::filesystem::path& path,
                                                uint64_t file_size);

}  // namespace torchship
