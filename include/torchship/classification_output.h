// What a classifier's result becomes for programs: the JSON the CLI's --json and the server's
// /classify give.
#pragma once

#include <nlohmann/json.hpp>

#include "torchship/model.h"

namespace torchship {

// {"index", "label", "score"}: one class of the top k.
nlohmann::json prediction_json(const Prediction& prediction);

}  // namespace torchship
