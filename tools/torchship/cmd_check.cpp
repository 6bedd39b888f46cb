// torchship check MODEL: rerun the golden vectors recorded at export on this machine.
#include <cstdio>
#include <iostream>

#include "cli_common.h"

namespace torchship::cli {
namespace {

constexpr int kExitMismatch = 3;

struct CheckOptions {
  ModelOptions model;
  bool json = false;
};

int run_check(const CheckOptions& options) {
  Model model = load_model(options.model, 1);
  GoldenReport report = check_golden(model);
  if (report.cases.empty()) {  // "PASS: 0 golden cases" would certify what proves nothing
    throw bad_input(options.model.path +
                    " has no golden cases to check: its golden index lists none (export it "
                    "with torchship.export to record them)");
  }
  if (options.json) {
    nlohmann::json cases = nlohmann::json::array();
    for (const auto& golden_case : report.cases) {
      nlohmann::json leaves = nlohmann::json::array();
      for (const auto& leaf : golden_case.leaves) {
        leaves.push_back({{"path", leaf.path},
                          {"max_abs", leaf.max_abs},
                          {"max_rel", leaf.max_rel},
                          {"atol", leaf.atol},
                          {"ok", leaf.ok},
                          {"problem", leaf.problem}});
      }
      cases.push_back(
          {{"ok", golden_case.ok()}, {"label", golden_case.label}, {"outputs", leaves}});
    }
    print_json(
        {{"ok", report.ok()}, {"rtol", report.rtol}, {"atol", report.atol}, {"cases", cases}});
    return report.ok() ? 0 : kExitMismatch;
  }
  for (size_t number = 0; number < report.cases.size(); ++number) {
    const std::string& label = report.cases[number].label;
    std::cout << "golden case " << number << (label.empty() ? "" : " (" + label + ")") << '\n';
    for (const auto& leaf : report.cases[number].leaves) {
      char line[256];
      std::snprintf(line, sizeof line, "  %-22s max abs %-10.3g atol %-10.3g %s", leaf.path.c_str(),
                    leaf.max_abs, leaf.atol, leaf.ok ? "ok" : "MISMATCH");
      std::cout << line << (leaf.problem.empty() ? "" : ": " + leaf.problem) << '\n';
    }
  }
  char verdict[160];
  std::snprintf(verdict, sizeof verdict,
                "%s: %zu golden case%s, tolerance |diff| <= atol + %g * |expected|",
                report.ok() ? "PASS" : "FAIL", report.cases.size(),
                report.cases.size() == 1 ? "" : "s", report.rtol);
  std::cout << verdict << '\n';
  return report.ok() ? 0 : kExitMismatch;
}

}  // namespace

Command add_check_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "check", "rerun the golden vectors recorded at export (exit 0 within tolerance, 3 outside)");
  auto options = std::make_shared<CheckOptions>();
  add_model_options(*command, options->model);
  command->add_flag("--json", options->json, "print one JSON object");
  return {command, [options] { return run_check(*options); }};
}

}  // namespace torchship::cli
