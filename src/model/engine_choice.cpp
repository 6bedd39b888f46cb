#include "model/engine_choice.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include <c10/util/StringUtil.h>

#include "core/text.h"
#include "torchship/error.h"
#include "torchship/golden.h"

namespace torchship {
namespace {

using Clock = std::chrono::steady_clock;

// Timing stops once every form has kMinRuns forwards and kBudget has passed, or at kMaxRuns:
// enough to tell engines apart by more than the 3% a static model needs, cheap next to the
// loads themselves.
constexpr int kMinRuns = 3;
constexpr int kMaxRuns = 15;
constexpr auto kBudget = std::chrono::milliseconds(1000);

struct Candidate {
  std::string name;
  Model model;
  std::vector<c10::IValue> inputs;  // its first golden case
  std::vector<double> ms;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

std::string milliseconds(double ms) {
  return c10::str(static_cast<double>(static_cast<int64_t>(ms * 100 + 0.5)) / 100) + " ms";
}

// Loads one form with its golden check on; nullopt and a note when it does not load here.
std::optional<Candidate> load_form(const Archive& archive, const ArchiveForm& form,
                                   const LoadOptions& options, std::vector<std::string>& notes) {
  LoadOptions form_options = options;
  form_options.engine = "auto";
  form_options.check_golden = true;
  form_options.warmup_runs = std::max(1, options.warmup_runs);
  try {
    Model model = Model::load(archive.open_form(form), form_options);
    auto inputs = golden_inputs(model);
    if (inputs.empty()) throw bad_model("it has no golden inputs to verify and time it on");
    return Candidate{format_id(form.format), std::move(model), std::move(inputs), {}};
  } catch (const Error& e) {
    notes.push_back(std::string("engine: ") + format_id(form.format) + " left out: " + e.what());
    return std::nullopt;
  }
}

// Interleaved rounds, one forward of each candidate per round, so that a machine growing
// busier slows all alike.
void time_candidates(std::vector<Candidate>& candidates) {
  auto started = Clock::now();
  for (int round = 0; round < kMaxRuns; ++round) {
    if (round >= kMinRuns && Clock::now() - started > kBudget) break;
    for (auto& candidate : candidates) {
      auto begin = Clock::now();
      forward_golden(candidate.model, candidate.inputs);
      candidate.ms.push_back(
          std::chrono::duration<double, std::milli>(Clock::now() - begin).count());
    }
  }
}

}  // namespace

void check_engine(const std::string& engine, const Archive& archive) {
  if (engine != "auto" && engine != "torchscript" && engine != "aoti" && engine != "openvino") {
    throw bad_input("unknown engine '" + engine +
                    "': expected auto, torchscript, aoti or openvino");
  }
  if (engine == "auto") return;
  if (archive.format() != ModelFormat::Auto) {
    if (engine == format_id(archive.format())) return;
    throw bad_input("engine " + engine + " asked for, but " + archive.path().string() +
                    " holds only its " + format_name(archive.format()) +
                    " form (torchship.export(..., format=\"auto\") writes every form)");
  }
  std::string held;
  for (const auto& form : archive.forms()) {
    if (engine == format_id(form.format)) return;
    held += std::string(held.empty() ? "" : ", ") + format_id(form.format);
  }
  throw bad_input("engine " + engine + " asked for, but " + archive.path().string() + " holds no " +
                  engine + " form (it holds " + held + ")");
}

EngineChoice choose_engine(const Archive& archive, const LoadOptions& options) {
  check_engine(options.engine, archive);
  EngineChoice choice;
  auto started = Clock::now();
  std::vector<Candidate> candidates;
  for (const auto& form : archive.forms()) {
    if (options.engine != "auto" && options.engine != format_id(form.format)) continue;
    if (auto candidate = load_form(archive, form, options, choice.notes)) {
      candidates.push_back(std::move(*candidate));
    }
  }
  if (candidates.empty()) {
    std::string why;
    for (const auto& note : choice.notes) why += "; " + note.substr(8);  // after "engine: "
    throw bad_model("cannot load " + archive.path().string() + ": no form runs here" + why);
  }
  if (candidates.size() == 1) {
    choice.notes.push_back(
        "engine: " + candidates[0].name +
        (options.engine == "auto" ? ", the only form that runs here" : ", as asked for"));
    choice.model = std::move(candidates[0].model);
    return choice;
  }
  time_candidates(candidates);
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) { return median(a.ms) < median(b.ms); });
  std::string note = "engine: " + candidates[0].name + " chosen, " +
                     milliseconds(median(candidates[0].ms)) + " per forward on the golden inputs";
  for (size_t i = 1; i < candidates.size(); ++i) {
    note += (i == 1 ? " against " : ", ") + candidates[i].name + " " +
            milliseconds(median(candidates[i].ms));
  }
  auto seconds = std::chrono::duration<double>(Clock::now() - started).count();
  note += " (median of " + std::to_string(candidates[0].ms.size()) +
          " interleaved runs; loading, checking and timing the forms took " +
          c10::str(static_cast<double>(static_cast<int64_t>(seconds * 10 + 0.5)) / 10) + " s)";
  choice.notes.push_back(note);
  choice.model = std::move(candidates[0].model);
  return choice;
}

}  // namespace torchship
