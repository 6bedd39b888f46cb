// The serving pieces without sockets: KServe request parsing (JSON and binary), output naming,
// dynamic batching handing each request its own rows, and repository control (explicit load /
// unload, polling). tests/python/test_serve.py and test_serve_triton.py cover the same over
// real HTTP and gRPC.
#include <unistd.h>

#include <fstream>
#include <future>
#include <thread>

#include <ATen/ATen.h>

#include "fixtures.h"
#include "serving/batcher.h"
#include "serving/http/kserve_json.h"
#include "serving/load_thread.h"
#include "serving/repository.h"
#include "torchship/torchship.h"

namespace torchship::serving {
namespace {

using testing::error_message;
using testing::trained;

TEST(KServe, ParsesJsonAndBinaryInputsAlike) {
  std::string json_body =
      R"({"id": 7, "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2],
          "data": [1, 2, 3, 4]}], "outputs": [{"name": "y", "parameters": {"binary_data": true}}]})";
  JsonInferRequest plain = parse_infer_request(json_body, nullptr);
  ASSERT_EQ(plain.inputs.size(), 1u);
  EXPECT_EQ(plain.id, 7);
  EXPECT_TRUE(at::equal(plain.inputs[0].tensor, at::arange(1, 5, at::kFloat).reshape({2, 2})));
  ASSERT_EQ(plain.outputs.size(), 1u);
  EXPECT_TRUE(plain.outputs[0].binary);

  std::string header =
      R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "parameters": {"binary_data_size": 16}}]})";
  float values[] = {1, 2, 3, 4};
  std::string body = header + std::string(reinterpret_cast<const char*>(values), sizeof values);
  std::string length = std::to_string(header.size());
  JsonInferRequest binary = parse_infer_request(body, &length);
  EXPECT_TRUE(at::equal(binary.inputs[0].tensor, plain.inputs[0].tensor));
}

TEST(KServe, BrokenRequestsSayWhatWasExpected) {
  auto parse = [](const std::string& body, const std::string* length = nullptr) {
    return error_message([&] { parse_infer_request(body, length); });
  };
  EXPECT_EQ(parse("{"),
            "the request body is not valid JSON (expected an inference request object)");
  EXPECT_EQ(parse(R"({"inputs": {}})"), "expected \"inputs\": a non-empty array of tensors");
  EXPECT_EQ(parse(R"({"inputs": [{"datatype": "FP32"}]})"),
            "inputs[0]: expected a tensor object with a \"name\" string");
  EXPECT_EQ(parse(R"({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1]},
                                 {"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}]})"),
            "input 'a' appears twice");
  std::string header =
      R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 4}}]})";
  std::string length = std::to_string(header.size());
  EXPECT_EQ(parse(header + "abcd", &length),
            "input 'x': binary_data_size is 4 bytes, but FP32 [2] takes 8");
  std::string exact =
      R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]})";
  std::string exact_length = std::to_string(exact.size());
  EXPECT_EQ(parse(exact + "abcdefghijkl", &exact_length),
            "the body has 4 bytes of binary data that no input's binary_data_size claims");
  std::string too_long = "9999";
  EXPECT_EQ(parse(header, &too_long),
            "Inference-Header-Content-Length is 9999 but the body has only " +
                std::to_string(header.size()) + " bytes");
}

// The five kinds of request that once reached an allocation before a check (std::bad_alloc, or
// libtorch's overflow message with its stack trace): each is now a one-line 400 reason.
TEST(KServe, HugeAndOverflowingShapesAreRefusedBeforeAllocating) {
  auto parse = [](const std::string& body, const std::string* length = nullptr) {
    return error_message([&] { parse_infer_request(body, length); });
  };
  EXPECT_EQ(parse(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [100000, 100000,
                                   100000], "data": [1]}]})"),
            "input 'x': shape [100000, 100000, 100000] needs 1000000000000000 values, \"data\" "
            "has 1");
  EXPECT_EQ(parse(R"({"inputs": [{"name": "x", "datatype": "FP64", "shape": [4294967296,
                                   4294967296], "data": [1]}]})"),
            "input 'x': shape [4294967296, 4294967296] has more elements than a tensor can hold");
  auto binary = [&](const std::string& shape, size_t bytes) {
    std::string header = R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": )" + shape +
                         R"(, "parameters": {"binary_data_size": )" + std::to_string(bytes) +
                         "}}]}";
    std::string length = std::to_string(header.size());
    return parse(header + std::string(bytes, '\0'), &length);
  };
  EXPECT_EQ(binary("[1000000, 1000000]", 4),
            "input 'x': binary_data_size is 4 bytes, but FP32 [1000000, 1000000] takes "
            "4000000000000");
  EXPECT_EQ(binary("[2305843009213693952, 2]", 4),
            "input 'x': shape [2305843009213693952, 2] takes more bytes than a tensor can hold");
  std::string header =
      R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 18446744073709551615}}]})";
  std::string length = std::to_string(header.size());
  EXPECT_EQ(parse(header + "abcd", &length),
            "input 'x': binary_data_size 18446744073709551615 runs past the end of the body (4 "
            "binary bytes left)");
  std::string bools =
      R"({"inputs": [{"name": "m", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}}]})";
  std::string bools_length = std::to_string(bools.size());
  EXPECT_EQ(parse(bools + std::string("\x01\x00\x07", 3), &bools_length),
            "input 'm': BOOL data holds bytes 0 or 1, byte 2 is 7");
  // Names are quoted printable: a NUL or an escape sequence does not cut or colour the message.
  EXPECT_EQ(parse("{\"inputs\": [{\"name\": \"a\\u0000b\\u001b[31m\", \"datatype\": \"FP32\", "
                  "\"shape\": [1]}]}"),
            "input 'a\\x00b\\x1b[31m': expected a tensor object {\"datatype\", \"shape\", "
            "\"data\"}, the \"data\" array is missing");
}

TEST(KServe, NamesOutputsFromTheManifestAndTheStructure) {
  Manifest manifest;
  manifest.outputs = {TensorSpec{"logits"}, TensorSpec{"labels"}};
  auto tuple = c10::ivalue::Tuple::create({at::zeros({1}), at::ones({2})});
  auto named = named_outputs(tuple, &manifest);
  ASSERT_EQ(named.size(), 2u);
  EXPECT_EQ(named[0].name, "logits");
  EXPECT_EQ(named[1].name, "labels");

  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  dict.insert("boxes", at::zeros({3, 4}));
  dict.insert("scores", at::zeros({3}));
  c10::impl::GenericList list(
      c10::DictType::create(c10::StringType::get(), c10::TensorType::get()));
  list.push_back(dict);
  auto detections = named_outputs(list, nullptr);
  ASSERT_EQ(detections.size(), 2u);
  EXPECT_EQ(detections[0].name, "output[0].boxes");
  EXPECT_EQ(detections[1].name, "output[0].scores");
  EXPECT_EQ(named_outputs(at::zeros({2}), nullptr)[0].name, "output");
}

TEST(Batcher, ConcurrentRequestsRunTogetherAndGetTheirOwnRows) {
  Model model = Model::load(trained("fashion_mnist.pt"));
  Metrics metrics;
  BatchPolicy policy;
  policy.max_batch_size = 8;
  policy.max_queue_delay = std::chrono::milliseconds(200);  // long: all five join one batch
  Batcher batcher(model, policy, metrics, "fashion", "1");
  std::vector<at::Tensor> images;
  std::vector<std::future<c10::IValue>> answers;
  for (int i = 0; i < 5; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "fashion_mnist_test/%05d.png", i);
    images.push_back(model.image_input(trained(name)).toTensor());
    answers.push_back(batcher.submit({images.back()}));
  }
  for (int i = 0; i < 5; ++i) {
    at::Tensor alone = model.forward({images[i]}).toTensor();
    at::Tensor batched = answers[i].get().toTensor();
    ASSERT_EQ(batched.sizes(), alone.sizes());
    EXPECT_LT((batched - alone).abs().max().item<double>(), 1e-5) << "request " << i;
  }
  std::string text = metrics.prometheus();
  EXPECT_NE(text.find("torchship_executions_total{model=\"fashion\",version=\"1\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("torchship_inferences_total{model=\"fashion\",version=\"1\"} 5\n"),
            std::string::npos);
  batcher.stop();
  EXPECT_THROW(batcher.submit({images[0]}), Unavailable);
}

// A model repository in a fresh temporary folder, removed afterwards.
class RepositoryFolder {
 public:
  RepositoryFolder()
      : root_(std::filesystem::temp_directory_path() /
              ("torchship-repository-" + std::to_string(getpid()))) {
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
  }
  ~RepositoryFolder() { std::filesystem::remove_all(root_); }
  const std::filesystem::path& root() const { return root_; }

  void put(const std::string& model, const std::string& version, const std::string& bytes) {
    auto folder = root_ / model / version;
    std::filesystem::create_directories(folder);
    std::ofstream(folder / "model.pt", std::ios::binary) << bytes;
  }
  void put_archive(const std::string& model, const std::string& version) {
    std::ifstream in(trained("fashion_mnist.pt"), std::ios::binary);
    put(model, version, std::string(std::istreambuf_iterator<char>(in), {}));
  }

 private:
  std::filesystem::path root_;
};

RepositoryOptions options_for(ModelControl control, std::vector<std::string> startup = {}) {
  RepositoryOptions options;
  options.load.with_warmup(0);
  options.control = control;
  options.startup_models = std::move(startup);
  return options;
}

std::vector<std::string> index_lines(const Repository& repository) {
  std::vector<std::string> lines;
  for (const auto& entry : repository.index(false)) {
    lines.push_back(entry.name + " " + entry.version + " " + entry.state +
                    (entry.reason.empty() ? "" : " (" + entry.reason.substr(0, 24) + ")"));
  }
  return lines;
}

TEST(LoadThread, RunsWhatEveryCallerAsksOnItsOneThreadAndRethrows) {
  LoadThread loader;
  std::vector<std::thread::id> ran_on(3);
  std::vector<std::thread> callers;
  for (auto& id : ran_on) {
    callers.emplace_back(
        [&loader, &id] { loader.run([&id] { id = std::this_thread::get_id(); }); });
  }
  for (auto& caller : callers) caller.join();
  EXPECT_EQ(ran_on[0], ran_on[1]);
  EXPECT_EQ(ran_on[1], ran_on[2]);
  EXPECT_NE(ran_on[0], std::this_thread::get_id());
  EXPECT_EQ(error_message([&] { loader.run([] { throw bad_input("no such model"); }); }),
            "no such model");
}

TEST(Repository, AModelConfigRecordsItsOptimization) {
  EXPECT_EQ(ModelConfig::parse("{}", "config.json").optimization, "");  // the server's
  EXPECT_EQ(ModelConfig::parse(R"({"optimization": "frozen", "instances": 2})", "config.json")
                .optimization,
            "frozen");
  try {
    ModelConfig::parse(R"({"optimization": 1})", "m/config.json");
    FAIL() << "a number was taken for an optimization";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_STREQ(e.what(),
                 "m/config.json: 'optimization' must be a string (auto, stored or a candidate's "
                 "name), got 1");
  }
}

TEST(Repository, ExplicitControlLoadsUnloadsAndLetsHeldVersionsFinish) {
  RepositoryFolder folder;
  folder.put_archive("fashion", "1");
  Metrics metrics;
  std::vector<std::string> log;
  Repository repository(folder.root(), options_for(ModelControl::Explicit), metrics,
                        [&](const std::string& line) { log.push_back(line); });
  EXPECT_EQ(index_lines(repository), std::vector<std::string>{"fashion  "});
  EXPECT_EQ(repository.find("fashion", ""), nullptr);

  repository.load("fashion");
  std::shared_ptr<ModelVersion> held = repository.find("fashion", "");
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(held->version, "1");
  EXPECT_EQ(index_lines(repository), std::vector<std::string>{"fashion 1 READY"});

  repository.unload("fashion");
  EXPECT_EQ(repository.find("fashion", ""), nullptr);
  EXPECT_EQ(index_lines(repository), std::vector<std::string>{"fashion  UNAVAILABLE (unloaded)"});
  // A request that found the version before the unload still runs on it.
  at::Tensor image = held->model->image_input(trained("fashion_mnist_test/00000.png")).toTensor();
  at::Tensor logits = held->batcher->submit({image}).get().toTensor();
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{1, 10}));
  EXPECT_NE(metrics.prometheus().find("torchship_model_ready{model=\"fashion\",version=\"1\"} 0"),
            std::string::npos);

  EXPECT_THROW(repository.load("nothing"), UnknownModel);
  EXPECT_THROW(repository.load(".."), UnknownModel);
  EXPECT_THROW(repository.unload("../fashion"), UnknownModel);
  EXPECT_EQ(log, (std::vector<std::string>{
                     "loaded fashion v1 from " + (folder.root() / "fashion/1/model.pt").string(),
                     "unloaded fashion v1 (requests in flight finish on it)"}));
}

TEST(Repository, PollingServesThroughCorruptVersionsAndFollowsChanges) {
  RepositoryFolder folder;
  folder.put_archive("fashion", "1");
  Metrics metrics;
  Repository repository(folder.root(), options_for(ModelControl::Poll), metrics,
                        [](const std::string&) {});
  EXPECT_THROW(repository.load("fashion"), ControlRefused);
  EXPECT_THROW(repository.unload("fashion"), ControlRefused);

  folder.put("fashion", "2", "not an archive");
  repository.poll();
  EXPECT_EQ(repository.find("fashion", "")->version, "1");
  auto index = repository.index(false);
  ASSERT_EQ(index.size(), 2u);
  EXPECT_EQ(index[1].version, "2");
  EXPECT_EQ(index[1].state, "UNAVAILABLE");
  EXPECT_FALSE(index[1].reason.empty());
  repository.poll();  // unchanged: not tried again
  EXPECT_NE(metrics.prometheus().find(
                "torchship_model_load_failures_total{model=\"fashion\",version=\"2\"} 1\n"),
            std::string::npos);

  folder.put_archive("fashion", "2");
  repository.poll();
  EXPECT_EQ(repository.find("fashion", "")->version, "2");

  folder.put("fashion", "2", "truncated");  // the serving version's file breaks
  repository.poll();
  ASSERT_NE(repository.find("fashion", "2"), nullptr);
  EXPECT_EQ(index_lines(repository)[1], "fashion 2 READY (serving the version load)");

  std::filesystem::remove_all(folder.root() / "fashion" / "2");
  repository.poll();
  EXPECT_EQ(repository.find("fashion", "")->version, "1");
  EXPECT_EQ(index_lines(repository), std::vector<std::string>{"fashion 1 READY"});
}

TEST(Repository, StartupRefusesWhatItCannotServe) {
  RepositoryFolder folder;
  folder.put("broken", "1", "not an archive");
  Metrics metrics;
  auto start = [&](RepositoryOptions options) {
    Repository repository(folder.root(), std::move(options), metrics, [](const std::string&) {});
  };
  EXPECT_EQ(error_message([&] {
              start(options_for(ModelControl::None));
            }).rfind("model 'broken' version 1: ", 0),
            0u);
  EXPECT_EQ(error_message([&] { start(options_for(ModelControl::None, {"broken"})); }),
            "--load-model needs --model-control-mode explicit (this mode loads every model in "
            "the repository)");
  EXPECT_EQ(error_message([&] { start(options_for(ModelControl::Explicit, {"nothing"})); }),
            "--load-model nothing: the repository " + folder.root().string() +
                " has no model folder of that name");
  // Explicit mode with nothing named starts empty: the broken model is loaded on request.
  start(options_for(ModelControl::Explicit));
  EXPECT_EQ(parse_model_control("poll"), ModelControl::Poll);
}

TEST(Repository, PollingStartsWithWhatIsWholeAndReportsWhatIsNot) {
  // A deploy cut off by a crash: version 2 half-written, another model's only file broken.
  RepositoryFolder folder;
  folder.put_archive("fashion", "1");
  folder.put("fashion", "2", "PK\x03\x04 the first bytes of a zip, then nothing");
  folder.put("broken", "1", "not an archive");
  Metrics metrics;
  std::vector<std::string> log;
  Repository repository(folder.root(), options_for(ModelControl::Poll), metrics,
                        [&](const std::string& line) { log.push_back(line); });
  EXPECT_EQ(repository.find("fashion", "")->version, "1");
  EXPECT_EQ(repository.find("broken", ""), nullptr);
  EXPECT_EQ(
      index_lines(repository),
      (std::vector<std::string>{
          "broken 1 UNAVAILABLE (cannot load " + folder.root().string().substr(0, 12) + ")",
          "fashion 1 READY",
          "fashion 2 UNAVAILABLE (cannot load " + folder.root().string().substr(0, 12) + ")"}));
  // Only the failures are logged at start (the summary lists what loaded).
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].rfind("error: model 'broken' version 1: cannot load ", 0), 0u) << log[0];
  EXPECT_EQ(log[1].rfind("error: model 'fashion' version 2: cannot load ", 0), 0u) << log[1];
  // The deploy finished: loaded at the next scan.
  folder.put_archive("fashion", "2");
  repository.poll();
  EXPECT_EQ(repository.find("fashion", "")->version, "2");
  EXPECT_EQ(error_message([] { parse_model_control("sometimes"); }),
            "--model-control-mode must be none, explicit or poll, got \"sometimes\"");
}

}  // namespace
}  // namespace torchship::serving
