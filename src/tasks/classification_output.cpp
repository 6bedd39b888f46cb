#include "torchship/classification_output.h"

namespace torchship {

nlohmann::json prediction_json(const Prediction& prediction) {
  return {{"index", prediction.index}, {"label", prediction.label}, {"score", prediction.score}};
}

}  // namespace torchship
