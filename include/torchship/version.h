#pragma once

namespace torchship {
// The torchship release this library was built from ("0.1.0").
const char* version() noexcept;
}  // namespace torchship
