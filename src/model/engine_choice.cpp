#include "model/engine_choice.h"

#include <algorithm>
#include <chrono>
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
    auto inputs = golden_inputs(model);
    if (inputs.empty()) throw bad_model("it has no golden inputs to verify and time it on");
    return Candidate{name, std::move(model), std::move(inputs), {}};
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

// "engine: openvino chosen, 2.1 ms ... against aoti 2.5 ms, ... (...)", `ranked` fastest first.
std::string choice_note(const std::vector<Candidate>& ranked, double seconds) {
  std::string note = "engine: " + ranked[0].name + " chosen, " +
                     milliseconds(median(ranked[0].ms)) + " per forward on the golden inputs";
  for (size_t i = 1; i < ranked.size(); ++i) {
    note +=
        (i == 1 ? " against " : ", ") + ranked[i].name + " " + milliseconds(median(ranked[i].ms));
  }
  return note + " (median of " + std::to_string(ranked[0].ms.size()) +
         " interleaved runs; loading, checking and timing the forms took " +
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
    std::sort(candidates.begin(), candidates.end(),
              [](const Candidate& a, const Candidate& b) { return median(a.ms) < median(b.ms); });
    choice.notes.push_back(
        choice_note(candidates, std::chrono::duration<double>(Clock::now() - started).count()));
  }
  choice.model = std::move(candidates[0].model);
  return choice;
}

}  // namespace torchship
