#include "backends/backend.h"

namespace torchship::backends {

bool says_out_of_memory(const std::string& text) {
  return text.find("can't allocate memory") != std::string::npos ||
         text.find("out of memory") != std::string::npos;
}

RunFailure failure_because(std::string why) {
  RunFailure failure;
  failure.out_of_memory = says_out_of_memory(why);
  failure.why = std::move(why);
  return failure;
}

bool keep_as_compiled(std::string note, const std::string& static_lead,
                      const std::vector<int64_t>& static_batches, OptimizationReport& report,
                      std::vector<std::string>& notes) {
  report.chosen = "stored";
  for (size_t i = 0; i < static_batches.size(); ++i) {
    note += (i == 0 ? "; " + static_lead + " " : ", ") + std::to_string(static_batches[i]);
  }
  notes.push_back(std::move(note));
  return false;
}

}  // namespace torchship::backends
