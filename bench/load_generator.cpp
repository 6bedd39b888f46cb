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
      } else {
        throw std::runtime_error("unknown flag " + flag);
      }
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
