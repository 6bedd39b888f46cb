// CRC-32 as zip files record it (ISO-HDLC: reflected polynomial 0xEDB88320), to verify an
// archive's records before libtorch reads them: libtorch's zip reader does not.
#pragma once

#include <cstddef>
#include <cstdint>

namespace torchship {

// Continues `crc` (0 to start) over `size` bytes.
uint32_t crc32(uint32_t crc, const void* data, size_t size);

}  // namespace torchship
