// torchship-load: replays one KServe v2 inference request against a server from N concurrent
// clients for a fixed time, over gRPC (ModelInfer, raw contents), HTTP with Triton's binary
// tensor extension, or HTTP JSON, and reports requests/s and latency percentiles as JSON. Each
// client is one connection (keep-alive for HTTP, its own channel for gRPC) sending its next
// request when the previous one is answered, as perf_analyzer's concurrency mode does. Written
// in C++ so that on a small machine the clients take little of the CPU the server needs.
//
//   torchship-load --protocol grpc --port 8001 --model fashion --request request.pb
//                  --clients 32 --seconds 10
//   torchship-load --protocol http --port 8000 --model fashion --request body.bin
//                  --header-length 212 --clients 32 --seconds 10
//
// With --mix, each client instead picks every request from a weighted list of kinds (protocol,
// model, request, and whether the server should accept it: bench/soak.py mixes valid and
// malformed ones) and every answer is written to --trace as one CSV line: the seconds since
// the start, the kind, the latency and the outcome (an HTTP status, 1000 + a gRPC code, -1
// when no answer came).
//
//   torchship-load --mix kinds.json --port 8000 --grpc-port 8001 --clients 32 --seconds 120
//                  --trace trace.csv
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "grpc_predict_v2.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string protocol;  // grpc | http
  std::string host = "127.0.0.1";
  int port = 0;
  std::string model;
  std::string request_path;
  long header_length = -1;  // HTTP: Inference-Header-Content-Length when binary data follows
  int clients = 1;
  double seconds = 10;
  double warmup_seconds = 1;
  std::string mix_path;    // --mix: kinds of requests to pick from
  std::string trace_path;  // --trace: one line per answer
  int grpc_port = 0;
};

// One kind of request of a mix.
struct Kind {
  std::string protocol;  // grpc | http
  std::string model;
  std::string payload;
  long header_length = -1;
  double weight = 1;
  inference::ModelInferRequest grpc_request;
};

struct Answer {
  float seconds;  // since the start, when the answer came
  uint16_t kind;
  float latency_ms;
  int16_t outcome;  // HTTP status, 1000 + gRPC code, -1: no answer
};

struct ClientResult {
  long calls = 0;                    // every call, the warm-up's included
  std::vector<double> latencies_ms;  // answered with success, after the warm-up
  std::map<std::string, long> failures;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs `send` (true when answered with success; `failure` says why not) until `end`, timing
// the calls made after `measure_from`.
template <typename Send>
void drive(Send send, Clock::time_point measure_from, Clock::time_point end, ClientResult& result) {
  std::string failure;
  while (true) {
    auto started = Clock::now();
    if (started >= end) return;
    failure.clear();
    bool ok = send(failure);
    auto finished = Clock::now();
    ++result.calls;
    if (started < measure_from) continue;
    if (ok) {
      result.latencies_ms.push_back(
          std::chrono::duration<double, std::milli>(finished - started).count());
    } else {
      ++result.failures[failure];
    }
  }
}

void grpc_client(const Options& options, const inference::ModelInferRequest& request,
                 Clock::time_point measure_from, Clock::time_point end, ClientResult& result) {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own
  arguments.SetMaxReceiveMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(options.host + ":" + std::to_string(options.port),
                                           grpc::InsecureChannelCredentials(), arguments);
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  drive(
      [&](std::string& failure) {
        grpc::ClientContext context;
        inference::ModelInferResponse response;
        grpc::Status status = stub->ModelInfer(&context, request, &response);
        if (!status.ok()) failure = "grpc " + std::to_string(status.error_code());
        return status.ok();
      },
      measure_from, end, result);
}

void http_client(const Options& options, const std::string& body, Clock::time_point measure_from,
                 Clock::time_point end, ClientResult& result) {
  httplib::Client client(options.host, options.port);
  client.set_keep_alive(true);
  client.set_tcp_nodelay(true);
  client.set_read_timeout(120, 0);
  httplib::Headers headers;
  std::string content_type = "application/json";
  if (options.header_length >= 0) {
    headers.emplace("Inference-Header-Content-Length", std::to_string(options.header_length));
    content_type = "application/octet-stream";
  }
  std::string path = "/v2/models/" + options.model + "/infer";
  drive(
      [&](std::string& failure) {
        auto response = client.Post(path, headers, body, content_type);
        if (!response) {
          failure = "http " + httplib::to_string(response.error());
          return false;
        }
        if (response->status != 200) failure = "http " + std::to_string(response->status);
        return response->status == 200;
      },
      measure_from, end, result);
}

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t index = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(index, sorted.size() - 1)];
}

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6;
}

std::vector<Kind> read_mix(const std::string& path) {
  auto list = nlohmann::json::parse(read_file(path));
  std::vector<Kind> kinds;
  for (const auto& item : list) {
    Kind kind;
    kind.protocol = item.at("protocol").get<std::string>();
    kind.model = item.at("model").get<std::string>();
    kind.payload = read_file(item.at("request").get<std::string>());
    kind.header_length = item.value("header_length", -1L);
    kind.weight = item.value("weight", 1.0);
    if (kind.protocol == "grpc" && !kind.grpc_request.ParseFromString(kind.payload)) {
      throw std::runtime_error(item.at("request").get<std::string>() +
                               " is not a serialized ModelInferRequest");
    }
    kinds.push_back(std::move(kind));
  }
  if (kinds.empty()) throw std::runtime_error(path + " lists no kinds of request");
  return kinds;
}

// One client of a mix: an HTTP connection and a gRPC channel of its own, a request of a kind
// drawn by weight each time.
void mix_client(const Options& options, const std::vector<Kind>& kinds, unsigned seed,
                Clock::time_point start, Clock::time_point end, std::vector<Answer>& answers) {
  httplib::Client http(options.host, options.port);
  http.set_keep_alive(true);
  http.set_tcp_nodelay(true);
  http.set_read_timeout(120, 0);
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub;
  if (options.grpc_port > 0) {
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    arguments.SetMaxReceiveMessageSize(-1);
    stub = inference::GRPCInferenceService::NewStub(
        grpc::CreateCustomChannel(options.host + ":" + std::to_string(options.grpc_port),
                                  grpc::InsecureChannelCredentials(), arguments));
  }
  std::vector<double> weights;
  for (const auto& kind : kinds) weights.push_back(kind.weight);
  std::mt19937 random(seed);
  std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
  while (true) {
    auto started = Clock::now();
    if (started >= end) return;
    size_t index = pick(random);
    const Kind& kind = kinds[index];
    int outcome = -1;
    if (kind.protocol == "grpc") {
      if (!stub) throw std::runtime_error("a gRPC kind of request needs --grpc-port");
      grpc::ClientContext context;
      inference::ModelInferResponse response;
      grpc::Status status = stub->ModelInfer(&context, kind.grpc_request, &response);
      outcome = 1000 + static_cast<int>(status.error_code());
      // No answer at all: the channel could not reach the server.
      if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
          status.error_message().find("failed to connect") != std::string::npos) {
        outcome = -1;
      }
    } else {
      httplib::Headers headers;
      std::string content_type = "application/json";
      if (kind.header_length >= 0) {
        headers.emplace("Inference-Header-Content-Length", std::to_string(kind.header_length));
        content_type = "application/octet-stream";
      }
      auto response =
          http.Post("/v2/models/" + kind.model + "/infer", headers, kind.payload, content_type);
      if (response) outcome = response->status;
    }
    auto finished = Clock::now();
    answers.push_back({std::chrono::duration<float>(finished - start).count(),
                       static_cast<uint16_t>(index),
                       std::chrono::duration<float, std::milli>(finished - started).count(),
                       static_cast<int16_t>(outcome)});
  }
}

int run_mix(const Options& options) {
  std::vector<Kind> kinds = read_mix(options.mix_path);
  auto start = Clock::now();
  auto end = start + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(options.seconds));
  std::vector<std::vector<Answer>> answers(options.clients);
  std::vector<std::string> errors(options.clients);
  std::vector<std::thread> threads;
  for (int i = 0; i < options.clients; ++i) {
    threads.emplace_back([&, i] {
      try {
        mix_client(options, kinds, 1234u + static_cast<unsigned>(i), start, end, answers[i]);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& error : errors) {
    if (!error.empty()) throw std::runtime_error("a client stopped: " + error);
  }
  std::ofstream trace(options.trace_path);
  if (!trace) throw std::runtime_error("cannot write " + options.trace_path);
  trace << "seconds,kind,latency_ms,outcome\n";
  size_t total = 0;
  for (const auto& list : answers) {
    for (const auto& answer : list) {
      trace << answer.seconds << ',' << answer.kind << ',' << answer.latency_ms << ','
            << answer.outcome << '\n';
    }
    total += list.size();
  }
  std::printf("{\"clients\": %d, \"seconds\": %.3f, \"answers\": %zu}\n", options.clients,
              options.seconds, total);
  return 0;
}

int run(const Options& options) {
  std::string payload = read_file(options.request_path);
  inference::ModelInferRequest request;
  if (options.protocol == "grpc" && !request.ParseFromString(payload)) {
    throw std::runtime_error(options.request_path + " is not a serialized ModelInferRequest");
  }
  auto start = Clock::now();
  auto measure_from = start + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(options.warmup_seconds));
  auto end = measure_from + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(options.seconds));
  std::vector<ClientResult> results(options.clients);
  double cpu_before = cpu_seconds();
  std::vector<std::thread> threads;
  for (int i = 0; i < options.clients; ++i) {
    threads.emplace_back([&, i] {
      try {
        if (options.protocol == "grpc") {
          grpc_client(options, request, measure_from, end, results[i]);
        } else {
          http_client(options, payload, measure_from, end, results[i]);
        }
      } catch (const std::exception& e) {
        ++results[i].failures[std::string("client: ") + e.what()];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  double cpu = cpu_seconds() - cpu_before;
  long calls = 0;
  for (const auto& result : results) calls += result.calls;

  std::vector<double> latencies;
  std::map<std::string, long> failures;
  for (const auto& result : results) {
    latencies.insert(latencies.end(), result.latencies_ms.begin(), result.latencies_ms.end());
    for (const auto& [why, count] : result.failures) failures[why] += count;
  }
  std::sort(latencies.begin(), latencies.end());
  double seconds = options.seconds;
  std::printf(
      "{\"protocol\": \"%s\", \"clients\": %d, \"seconds\": %.3f, \"requests\": %zu, "
      "\"rps\": %.3f, \"p50_ms\": %.4f, \"p90_ms\": %.4f, \"p99_ms\": %.4f, "
      "\"client_cpu_us_per_call\": %.1f, \"failures\": {",
      options.protocol.c_str(), options.clients, seconds, latencies.size(),
      static_cast<double>(latencies.size()) / seconds, percentile(latencies, 0.5),
      percentile(latencies, 0.9), percentile(latencies, 0.99),
      calls > 0 ? cpu * 1e6 / static_cast<double>(calls) : 0.0);
  bool first = true;
  for (const auto& [why, count] : failures) {
    std::printf("%s\"%s\": %ld", first ? "" : ", ", why.c_str(), count);
    first = false;
  }
  std::printf("}}\n");
  return latencies.empty() ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto value = [&](size_t& i) -> const std::string& {
    if (i + 1 >= args.size()) throw std::runtime_error(args[i] + " needs a value");
    return args[++i];
  };
  try {
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& flag = args[i];
      if (flag == "--protocol") {
        options.protocol = value(i);
      } else if (flag == "--host") {
        options.host = value(i);
      } else if (flag == "--port") {
        options.port = std::stoi(value(i));
      } else if (flag == "--model") {
        options.model = value(i);
      } else if (flag == "--request") {
        options.request_path = value(i);
      } else if (flag == "--header-length") {
        options.header_length = std::stol(value(i));
      } else if (flag == "--clients") {
        options.clients = std::stoi(value(i));
      } else if (flag == "--seconds") {
        options.seconds = std::stod(value(i));
      } else if (flag == "--warmup-seconds") {
        options.warmup_seconds = std::stod(value(i));
      } else if (flag == "--mix") {
        options.mix_path = value(i);
      } else if (flag == "--trace") {
        options.trace_path = value(i);
      } else if (flag == "--grpc-port") {
        options.grpc_port = std::stoi(value(i));
      } else {
        throw std::runtime_error("unknown flag " + flag);
      }
    }
    if (!options.mix_path.empty()) {
      if (options.port <= 0 || options.trace_path.empty() || options.clients < 1 ||
          options.seconds <= 0) {
        throw std::runtime_error(
            "usage: torchship-load --mix KINDS.json --port P [--grpc-port P] --trace OUT.csv "
            "[--clients N] [--seconds S] [--host H]");
      }
      return run_mix(options);
    }
    if ((options.protocol != "grpc" && options.protocol != "http") || options.port <= 0 ||
        options.model.empty() || options.request_path.empty() || options.clients < 1 ||
        options.seconds <= 0) {
      throw std::runtime_error(
          "usage: torchship-load --protocol grpc|http --port P --model M --request FILE "
          "[--header-length N] [--clients N] [--seconds S] [--warmup-seconds S] [--host H]");
    }
    return run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torchship-load: %s\n", e.what());
    return 2;
  }
}
