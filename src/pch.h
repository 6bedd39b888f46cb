// Precompiled header: the heavy third-party headers every library file includes.
#pragma once

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/script.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
