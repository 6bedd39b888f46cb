#include "model/engine_choice.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include <c10/util/StringUtil.h>

#include "core/text.h"
#include "platform/cpu_features.h"
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
// bf16 stays only where top-1 agrees with fp32 on this share of the golden inputs' rows.
constexpr double kTop1Agreement = 0.99;

using Inputs = std::vector<c10::IValue>;

struct Candidate {
  std::string name;
  Model model;
  std::vector<Inputs> cases;            // the golden cases it is timed on (timing_cases)
  std::vector<std::vector<double>> ms;  // per case, one per timed forward
  double score = 0;                     // choice_scores: lower is faster
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Whether `other` holds `first`'s inputs at a smaller batch: each tensor of the same sizes but
// the first, that one smaller.
bool smaller_batch_of(const Inputs& first, const Inputs& other) {
  if (first.size() != other.size()) return false;
  bool any_tensor = false;
  for (size_t i = 0; i < first.size(); ++i) {
    if (first[i].isTensor() != other[i].isTensor()) return false;
    if (!first[i].isTensor()) continue;
    auto a = first[i].toTensor().sizes(), b = other[i].toTensor().sizes();
    if (a.size() != b.size() || a.empty() || a.slice(1) != b.slice(1) || b[0] >= a[0]) {
      return false;
    }
    any_tensor = true;
  }
  return any_tensor;
}

// The golden cases a choice is timed on: the first (the export's example) and, where the archive
// holds it, the same inputs at the smallest batch. An engine fastest at batch 8 can be the
// slowest at batch 1 (the zoo's MNASNet: AOTInductor chosen at 1.86x OpenVINO's time).
std::vector<Inputs> timing_cases(const Model& model) {
  std::vector<Inputs> cases{golden_inputs(model)};
  if (cases[0].empty()) return {};
  std::optional<Inputs> smallest;
  for (size_t number = 1;; ++number) {
    Inputs inputs = golden_inputs(model, number);
    if (inputs.empty()) break;
    if (smaller_batch_of(smallest ? *smallest : cases[0], inputs)) smallest = std::move(inputs);
  }
  if (smallest) cases.push_back(std::move(*smallest));
  return cases;
}

// The batch size of a case's first tensor, for the notes ("" where it has none).
std::string batch_of(const Inputs& inputs) {
  for (const auto& input : inputs) {
    if (input.isTensor() && input.toTensor().dim() > 0) {
      return "batch " + std::to_string(input.toTensor().size(0));
    }
  }
  return "";
}

std::string milliseconds(double ms) {
  return c10::str(static_cast<double>(static_cast<int64_t>(ms * 100 + 0.5)) / 100) + " ms";
}

// Loads one form in `precision` with its golden check on; nullopt and a note when it does not
// load or verify here. An archive of one form is its own only form.
std::optional<Candidate> load_form(const Archive& archive, const ArchiveForm& form,
                                   const std::string& precision, const LoadOptions& options,
                                   std::vector<std::string>& notes, bool check_golden = true) {
  LoadOptions form_options = options;
  form_options.engine = "auto";
  form_options.precision = precision;
  form_options.check_golden = check_golden;
  form_options.warmup_runs = std::max(1, options.warmup_runs);
  std::string name = format_id(form.format) + (precision == "bf16" ? std::string(" bf16") : "");
  try {
    Model model = Model::load(
        archive.format() == ModelFormat::Auto ? archive.open_form(form) : archive, form_options);
    auto cases = timing_cases(model);
    if (cases.empty()) throw bad_model("it has no golden inputs to verify and time it on");
    return Candidate{name, std::move(model), std::move(cases), {}};
  } catch (const Error& e) {
    notes.push_back("engine: " + name + " left out: " + e.what());
    return std::nullopt;
  }
}

bool computes_bf16_natively() {
  return cpu_has_feature("avx512_bf16") || cpu_has_feature("amx_bf16");
}

// How many rows of all golden inputs get the same top-1 class from both models, of how many.
std::pair<size_t, size_t> top1_agreement(const Model& reduced, const Model& full) {
  size_t same = 0, rows = 0;
  for (size_t number = 0;; ++number) {
    auto inputs = golden_inputs(full, number);
    if (inputs.empty()) break;
    auto expected = full.top_k_rows(forward_golden(full, inputs), 1);
    auto got = reduced.top_k_rows(forward_golden(reduced, inputs), 1);
    for (size_t row = 0; row < expected.size() && row < got.size(); ++row) {
      ++rows;
      if (!expected[row].empty() && !got[row].empty() &&
          expected[row][0].index == got[row][0].index) {
        ++same;
      }
    }
  }
  return {same, rows};
}

struct Bf16Verdict {
  bool kept = false;
  std::string measured;  // the golden check's worst error and, for classification, top-1
};

// Whether bf16 stays: every golden case within bf16's tolerance (the golden check of a model
// loaded in bf16) and, for classification, top-1 as fp32's on 99% of the golden rows.
Bf16Verdict bf16_verdict(const Model& bf16, const Model& fp32) {
  Bf16Verdict verdict;
  GoldenReport report = check_golden(bf16);
  double worst = 0;
  for (const auto& golden_case : report.cases) {
    for (const auto& leaf : golden_case.leaves) worst = std::max(worst, leaf.max_abs);
  }
  verdict.kept = report.ok();
  verdict.measured = "golden cases " + std::string(report.ok() ? "all within" : "not all within") +
                     " bf16's tolerance (max abs error " + c10::str(worst) + ")";
  const auto& manifest = bf16.manifest();
  if (manifest && manifest->task == "classification") {
    auto [same, rows] = top1_agreement(bf16, fp32);
    double share = rows ? static_cast<double>(same) / static_cast<double>(rows) : 0;
    verdict.measured += ", top-1 as fp32's on " + std::to_string(same) + " of " +
                        std::to_string(rows) + " golden rows";
    if (share < kTop1Agreement) verdict.kept = false;
  }
  verdict.measured += verdict.kept ? "" : " (bf16 needs both within tolerance and 99% top-1)";
  return verdict;
}

// precision "auto": the OpenVINO form in bf16 too, where the CPU computes it natively and it
// agrees with its fp32 self; a note says what was measured or why it was not tried.
void add_bf16_candidate(const Archive& archive, const LoadOptions& options,
                        std::vector<Candidate>& candidates, std::vector<std::string>& notes) {
  auto fp32 = std::find_if(candidates.begin(), candidates.end(),
                           [](const Candidate& c) { return c.name == "openvino"; });
  if (fp32 == candidates.end()) {
    notes.push_back(
        "precision: fp32 (bf16 is chosen at load for the OpenVINO form, which does "
        "not run here)");
    return;
  }
  if (!computes_bf16_natively()) {
    notes.push_back("precision: fp32 (this CPU computes bf16 with neither AVX512-BF16 nor AMX)");
    return;
  }
  ArchiveForm form{ModelFormat::OpenVINO, ""};
  for (const auto& held : archive.forms()) {
    if (held.format == ModelFormat::OpenVINO) form = held;
  }
  auto bf16 = load_form(archive, form, "bf16", options, notes, /*check_golden=*/false);
  if (!bf16) return;
  Bf16Verdict verdict;
  try {
    verdict = bf16_verdict(bf16->model, fp32->model);
  } catch (const Error& e) {
    notes.push_back(std::string("engine: openvino bf16 left out: ") + e.what());
    return;
  }
  notes.push_back((verdict.kept ? "precision: openvino bf16 kept: " : "precision: fp32: ") +
                  verdict.measured);
  if (!verdict.kept) return;
  candidates.push_back(std::move(*bf16));
}

// Interleaved rounds, one forward of each candidate on each case per round, so that a machine
// growing busier slows all alike.
void time_candidates(std::vector<Candidate>& candidates) {
  for (auto& candidate : candidates) candidate.ms.assign(candidate.cases.size(), {});
  auto started = Clock::now();
  for (int round = 0; round < kMaxRuns; ++round) {
    if (round >= kMinRuns && Clock::now() - started > kBudget) break;
    for (auto& candidate : candidates) {
      for (size_t c = 0; c < candidate.cases.size(); ++c) {
        auto begin = Clock::now();
        forward_golden(candidate.model, candidate.cases[c]);
        candidate.ms[c].push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - begin).count());
      }
    }
  }
}

// Each candidate's geometric mean, over the cases, of its median time against the fastest
// candidate's on that case: batch 1 weighs as much as batch 8, whatever their times.
void choice_scores(std::vector<Candidate>& candidates) {
  size_t cases = candidates[0].cases.size();
  for (const auto& candidate : candidates) cases = std::min(cases, candidate.cases.size());
  for (auto& candidate : candidates) candidate.score = 0;
  for (size_t c = 0; c < cases; ++c) {
    double fastest = median(candidates[0].ms[c]);
    for (const auto& candidate : candidates) fastest = std::min(fastest, median(candidate.ms[c]));
    for (auto& candidate : candidates) {
      candidate.score += std::log(median(candidate.ms[c]) / fastest) / static_cast<double>(cases);
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

namespace {

// Each form the options allow, loaded and verified here; for precision "auto", the OpenVINO
// form in bf16 too.
std::vector<Candidate> load_candidates(const Archive& archive, const LoadOptions& options,
                                       std::vector<std::string>& notes) {
  std::vector<ArchiveForm> forms = archive.forms();
  if (archive.format() != ModelFormat::Auto) forms = {{archive.format(), ""}};
  bool choose_precision = options.precision == "auto";
  std::vector<Candidate> candidates;
  for (const auto& form : forms) {
    if (options.engine != "auto" && options.engine != format_id(form.format)) continue;
    if (auto candidate = load_form(archive, form, choose_precision ? "fp32" : options.precision,
                                   options, notes)) {
      candidates.push_back(std::move(*candidate));
    }
  }
  if (choose_precision) add_bf16_candidate(archive, options, candidates, notes);
  return candidates;
}

Error no_form_runs(const Archive& archive, const std::vector<std::string>& notes) {
  std::string why;
  for (const auto& note : notes) {
    if (note.rfind("engine: ", 0) == 0) why += "; " + note.substr(8);
  }
  return bad_model("cannot load " + archive.path().string() + ": no form runs here" + why);
}

// A candidate's median times, one per case: "2.1 ms" or "21.3 ms (batch 8) and 2.9 ms (batch 1)".
std::string case_times(const Candidate& candidate) {
  if (candidate.ms.size() == 1) return milliseconds(median(candidate.ms[0]));
  std::string text;
  for (size_t c = 0; c < candidate.ms.size(); ++c) {
    text += (c ? " and " : "") + milliseconds(median(candidate.ms[c])) + " (" +
            batch_of(candidate.cases[c]) + ")";
  }
  return text;
}

// "engine: openvino chosen, 2.1 ms ... against aoti 2.5 ms, ... (...)", `ranked` fastest first.
std::string choice_note(const std::vector<Candidate>& ranked, double seconds) {
  std::string note = "engine: " + ranked[0].name + " chosen, " + case_times(ranked[0]) +
                     " per forward on the golden inputs";
  for (size_t i = 1; i < ranked.size(); ++i) {
    note += (i == 1 ? " against " : ", ") + ranked[i].name + " " + case_times(ranked[i]);
  }
  return note + " (median of " + std::to_string(ranked[0].ms[0].size()) + " interleaved runs" +
         (ranked[0].ms.size() > 1 ? ", chosen by the geometric mean of each batch's time "
                                    "against the fastest's"
                                  : "") +
         "; loading, checking and timing the forms took " +
         c10::str(static_cast<double>(static_cast<int64_t>(seconds * 10 + 0.5)) / 10) + " s)";
}

}  // namespace

EngineChoice choose_engine(const Archive& archive, const LoadOptions& options) {
  check_engine(options.engine, archive);
  auto started = Clock::now();
  EngineChoice choice;
  std::vector<Candidate> candidates = load_candidates(archive, options, choice.notes);
  if (candidates.empty()) throw no_form_runs(archive, choice.notes);
  if (candidates.size() == 1) {
    choice.notes.push_back(
        "engine: " + candidates[0].name +
        (options.engine == "auto" ? ", the only form that runs here" : ", as asked for"));
  } else {
    time_candidates(candidates);
    choice_scores(candidates);
    std::sort(candidates.begin(), candidates.end(),
              [](const Candidate& a, const Candidate& b) { return a.score < b.score; });
    choice.notes.push_back(
        choice_note(candidates, std::chrono::duration<double>(Clock::now() - started).count()));
  }
  choice.model = std::move(candidates[0].model);
  return choice;
}

}  // namespace torchship
