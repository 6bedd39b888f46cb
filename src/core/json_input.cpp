#include "torchship/json_input.h"

#include "torchship/error.h"

namespace torchship {

nlohmann::json parse_json(std::string_view text, const std::string& what) {
  auto bounded = [&what](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > kMaxJsonDepth) {
      throw bad_input(what + " nests arrays and objects deeper than " +
                      std::to_string(kMaxJsonDepth) + " levels");
    }
    return true;
  };
  return nlohmann::json::parse(text.begin(), text.end(), bounded, /*allow_exceptions=*/false);
}

}  // namespace torchship
