// Custom-operator libraries (torchvision's, a user's own): loaded into the process before an
// archive that needs their operators.
#pragma once

#include <filesystem>
#include <optional>

namespace torchship {

// Loads a custom-operator library into the process (idempotent per path). Throws
// Error(BadModel) when it cannot be loaded.
void load_extension(const std::filesystem::path& library);
// Where torchvision's operator library is on this machine, if anywhere. TORCHSHIP_TORCHVISION_OPS
// overrides the search: a path names the library, an empty value turns the search off.
std::optional<std::filesystem::path> find_torchvision_ops();

}  // namespace torchship
