// torchship: run TorchScript archives from the command line.
#include <iostream>
#include <iterator>
#include <optional>

#include "cli_common.h"
#include "core/text.h"
#include "platform/libtorch_warnings.h"
#include "stderr_filter.h"
#include "torchship/runtime.h"
#include "torchship/version.h"
#ifdef TORCHSHIP_WITH_SERVE
#include "serving/server.h"
#endif

namespace {

constexpr const char* kCommands[] = {"info",   "run",   "classify", "segment",
                                     "detect", "check", "bench",    "serve"};

int report(const std::string& message, int exit_code) {
  torchship::cli::report_error(message);
  return exit_code;
}

int exit_code_for(torchship::ErrorKind kind) {
  return kind == torchship::ErrorKind::Internal ? 1 : 2;
}

// What --version prints: the release and the libtorch it runs on, then what this build runs
// and serves.
std::string version_report() {
  std::string report =
      torchship::version_line() + "\nbackends: " + torchship::join(torchship::compiled_backends());
#ifdef TORCHSHIP_WITH_SERVE
  report += "\nserve: " + torchship::join(torchship::serving::protocols());
#endif
  return report;
}

// "info, run, ... or serve": the commands, in messages.
std::string command_list() {
  std::string list;
  size_t count = std::size(kCommands);
  for (size_t i = 0; i < count; ++i) {
    list += (i == 0 ? "" : i + 1 == count ? " or " : ", ") + std::string(kCommands[i]);
  }
  return list;
}

// Parses the command line; an exit code when that already ends the run (help, version, a
// mistake), none when a command is to run.
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  if (argc > 1 && argv[1][0] != '-') {
    std::string name = argv[1];
    if (std::find(std::begin(kCommands), std::end(kCommands), name) == std::end(kCommands)) {
      return report(
          "unknown command '" + name + "' (expected " + command_list() + "; see torchship --help)",
          2);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return report(std::string(e.what()) + " (see torchship --help)", 2);
  }
  return std::nullopt;
}

// Runs the parsed command: every failure is one line on stderr and an exit code.
int run_parsed_command(const std::vector<torchship::cli::Command>& commands) {
  using namespace torchship;
  try {
    for (const auto& command : commands) {
      if (command.parser->parsed()) return command.run();
    }
    return report("no command given", 2);
  } catch (const Error& e) {
    return report(e.what(), exit_code_for(e.kind()));
  } catch (const c10::Error& e) {
    return report("libtorch: " + printable(first_line(e)), 1);
  } catch (const std::bad_alloc&) {
    return report("internal error: out of memory", 1);
  } catch (const std::exception& e) {
    return report("internal error: " + printable(first_line(e)), 1);
  }
}

// `torchship package-worker CHANNELS DEVICE THREADS`: not a command for people; what a server
// with --package-workers starts to run a package in (torchship/runtime.h).
std::optional<int> run_package_worker(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "package-worker") return std::nullopt;
  if (argc != 5) return report("package-worker takes CHANNELS DEVICE THREADS", 2);
  try {
    return torchship::serve_package_worker(std::stoi(argv[2]), argv[3], std::stoi(argv[4]));
  } catch (const std::exception& e) {
    return report("package-worker: " + std::string(e.what()), 2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace torchship;
  tune_memory_for_inference();
  cli::drop_compiled_code_error_copies();
  route_libtorch_warnings([](const std::string& message) { cli::warn("libtorch: " + message); });
  if (auto exit_code = run_package_worker(argc, argv)) return *exit_code;
  CLI::App app{
      "torchship " + std::string(version()) +
      ": run PyTorch pipelines exported as TorchScript archives, AOTInductor packages or OpenVINO "
      "IR"};
  app.set_version_flag("--version", version_report());
  app.require_subcommand(1);
  app.fallthrough(false);

  std::vector<cli::Command> commands = {
    cli::add_info_command(app),
    cli::add_run_command(app),
    cli::add_classify_command(app),
    cli::add_segment_command(app),
    cli::add_detect_command(app),
    cli::add_check_command(app),
    cli::add_bench_command(app),
#if defined(TORCHSHIP_WITH_SERVE)
    cli::add_serve_command(app),
#endif
  };
  if (auto exit_code = parse_command_line(app, argc, argv)) return *exit_code;
  return run_parsed_command(commands);
}
