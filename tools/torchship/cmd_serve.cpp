// torchship serve --model-repository DIR: the KServe v2 / Triton server over HTTP and gRPC
// (docs/serving.md).
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include "cli_common.h"
#include "serving/server.h"

namespace torchship::cli {
namespace {

struct ServeOptions {
  serving::ServerOptions server;
  int threads = 0;
  int interop_threads = 0;
  bool no_optimize = false;
  int warmup = 2;
  int64_t max_image_pixels = kDefaultMaxImagePixels;
  std::string model_control = "none";
  std::string engine = "auto";
  std::string precision;
  std::string package_workers = "off";
};

// SIGTERM and SIGINT may arrive on any thread: libraries start threads of their own (the CUDA
// build of libtorch does before main), so blocking the signals in ours is not enough. The
// handler only writes the signal's number to a pipe; a waiting thread reads it and stops the
// server gracefully (in-flight requests finish, then serve() returns).
int signal_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int number) {
  unsigned char byte = static_cast<unsigned char>(number);
  [[maybe_unused]] ssize_t written = write(signal_pipe[1], &byte, 1);  // async-signal-safe
}

void install_stop_signals() {
  if (pipe2(signal_pipe, O_CLOEXEC) != 0) throw internal_error("cannot create the signal pipe");
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
}

// The process-wide runtime and the server's options from the command line and environment.
void configure(ServeOptions& options) {
  if (options.server.api_key.empty()) {
    if (const char* key = std::getenv("TORCHSHIP_API_KEY")) options.server.api_key = key;
  }
  // A server unloads and reloads models: loaded AOTInductor packages are kept for reuse (their
  // libraries cannot be unloaded; runtime.h). TORCHSHIP_KEEP_COMPILED_PACKAGES=0 turns that off,
  // to measure what it saves (tests/python/test_model_cycles.py).
  const char* keep = std::getenv("TORCHSHIP_KEEP_COMPILED_PACKAGES");
  configure_runtime(
      RuntimeOptions()
          .with_threads(options.threads)
          .with_interop_threads(options.interop_threads)
          .with_keep_compiled_packages(!keep || std::string(keep) != "0")
          // (this program, even if its file was replaced since it started)
          .with_package_workers(parse_package_workers(options.package_workers), "/proc/self/exe"));
  options.server.threads_per_instance = options.threads;
  options.server.model_control = serving::parse_model_control(options.model_control);
  options.server.load.with_optimize(!options.no_optimize)
      .with_warmup(options.warmup)
      .with_max_image_pixels(options.max_image_pixels)
      .with_engine(options.engine)
      .with_precision(options.precision);
}

// "listening on http://HOST:PORT and grpc://HOST:PORT (API key required); model control: ..."
std::string listening_line(const serving::Server& server, const ServeOptions& options) {
  std::string host = options.server.host.find(':') != std::string::npos
                         ? "[" + options.server.host + "]"
                         : options.server.host;
  std::string listening = "listening on http://" + host + ":" + std::to_string(server.port());
  if (server.grpc_port() >= 0) {
    listening += " and grpc://" + host + ":" + std::to_string(server.grpc_port());
  }
  if (!options.server.api_key.empty()) listening += " (API key required)";
  if (options.server.model_control != serving::ModelControl::None) {
    listening += "; model control: " + options.model_control;
  }
  if (options.server.model_control == serving::ModelControl::Poll) {
    listening += " every " + std::to_string(options.server.repository_poll_secs) + " s";
  }
  return listening;
}

// Serves until SIGTERM or SIGINT (then in-flight requests finish) or until the server fails.
void serve_until_stopped(serving::Server& server) {
  std::thread waiter([&server] {
    unsigned char received = 0;
    while (read(signal_pipe[0], &received, 1) < 0 && errno == EINTR) {
    }
    if (received == 0) return;  // serve() returned on its own
    info(std::string("received ") + (received == SIGTERM ? "SIGTERM" : "SIGINT") +
         ": finishing requests in flight");
    server.stop();
  });
  server.serve();
  // serve() also returns when the server fails: wake the waiter so that it can be joined.
  unsigned char wake = 0;
  [[maybe_unused]] ssize_t written = write(signal_pipe[1], &wake, 1);
  waiter.join();
}

int run_serve(ServeOptions& options) {
  install_stop_signals();
  configure(options);
  serving::Server server(options.server);
  server.bind();
  info("serving " + server.summary());
  info(listening_line(server, options));
  serve_until_stopped(server);
  info("stopped");
  return 0;
}

// Where it listens, what it serves, who may call it.
void add_listen_options(CLI::App& command, ServeOptions& options) {
  command
      .add_option("--model-repository", options.server.model_repository,
                  "DIR/<model>/<version>/model.pt, optional DIR/<model>/config.json")
      ->required();
  command.add_option("--host", options.server.host, "address to listen on")->capture_default_str();
  command.add_option("--port", options.server.port, "port (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  command
      .add_option("--grpc-port", options.server.grpc_port,
                  "also serve KServe v2 over gRPC on this port (0: any free port)")
      ->check(CLI::Range(0, 65535));
  command
      .add_option("--model-control-mode", options.model_control,
                  "none: load every model at start; explicit: load --load-model ones, then on "
                  "request (POST /v2/repository/models/<m>/load|unload); poll: every model, "
                  "then rescan the repository")
      ->check(CLI::IsMember({"none", "explicit", "poll"}))
      ->capture_default_str();
  command.add_option("--load-model", options.server.load_models,
                     "with explicit control: a model to load at start (repeatable; * for all)");
  command
      .add_option("--repository-poll-secs", options.server.repository_poll_secs,
                  "with poll control: seconds between rescans of the repository")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command.add_option("--api-key", options.server.api_key,
                     "require Authorization: Bearer KEY on every route but /v2/health/* "
                     "(gRPC: metadata authorization, on every call but ServerLive and "
                     "ServerReady; or set TORCHSHIP_API_KEY)");
}

// What one request may take: bytes, time, threads, decodes, pixels.
void add_limit_options(CLI::App& command, const std::shared_ptr<ServeOptions>& options) {
  command.add_option("--max-body-bytes", options->server.max_body_bytes, "larger bodies get 413")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      .add_option("--timeout", options->server.read_timeout_s,
                  "seconds a client may stay silent while sending or receiving")
      ->check(CLI::PositiveNumber)
      ->capture_default_str()
      ->each([options](const std::string&) {
        options->server.write_timeout_s = options->server.read_timeout_s;
      });
  command
      .add_option("--header-timeout-ms", options->server.header_timeout_ms,
                  "an HTTP request's header must arrive within this of its first byte, or 408")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      .add_option("--body-timeout-ms", options->server.body_timeout_ms,
                  "an HTTP request's body must arrive within this of its header, or 408")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command.add_option("--http-threads", options->server.http_threads, "connections served at once")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      .add_option("--max-concurrent-decodes", options->server.max_concurrent_decodes,
                  "request bodies decoded at once (JSON, tensors, images): bounds peak memory")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      .add_option("--max-image-pixels", options->max_image_pixels,
                  "larger uploads (width x height, from the image header) get 400")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      .add_option("--request-timeout-ms", options->server.request_timeout_ms,
                  "requests not answered this long after arriving get 504 (0: no deadline)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

// How each model is loaded and run.
void add_loading_options(CLI::App& command, ServeOptions& options) {
  command
      .add_option("--threads", options.threads,
                  "intra-op threads per model instance (0: the CPUs this process may use, "
                  "shared between a model's instances)")
      ->check(CLI::NonNegativeNumber);
  command.add_option("--interop-threads", options.interop_threads, "inter-op threads")
      ->check(CLI::NonNegativeNumber);
  command.add_flag("--no-optimize", options.no_optimize, "run the models as stored");
  command.add_option("--engine", options.engine, kEngineHelp)->capture_default_str();
  command.add_option("--precision", options.precision, kPrecisionHelp)
      ->check(CLI::IsMember({"fp32", "bf16", "auto"}));
  command
      .add_option("--package-workers", options.package_workers,
                  "AOTInductor packages to run each in a worker process, freed with its model: "
                  "frozen (their weights compiled in: each version a new library, which only "
                  "a process's end unmaps), all, or off")
      ->check(CLI::IsMember({"off", "frozen", "all"}))
      ->capture_default_str();
  command.add_option("--warmup", options.warmup, "forward runs per model right after loading")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

}  // namespace

Command add_serve_command(CLI::App& app) {
  auto* command =
      app.add_subcommand("serve", "KServe v2 / Triton-compatible server (HTTP and gRPC)");
  auto options = std::make_shared<ServeOptions>();
  add_listen_options(*command, *options);
  add_limit_options(*command, options);
  add_loading_options(*command, *options);
  return {command, [options] { return run_serve(*options); }};
}

}  // namespace torchship::cli
