// libFuzzer targets for every parser that reads bytes from outside, in one binary (each
// translation unit that includes libtorch costs 15 s to compile). TORCHSHIP_FUZZ_TARGET picks
// the target; scripts/fuzz.sh runs them with their corpora in tests/fuzz/corpus/<target>/.
//
// A target passes when every input either parses or throws torchship::Error: anything else (a
// crash, a sanitizer report, another exception, an allocation beyond -malloc_limit_mb, a hang)
// is a finding.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>

#include <ATen/ATen.h>
#include <ATen/core/jit_type.h>

#include "archive/golden_index.h"
#include "input_spec.h"
#include "serving/http/content_encoding.h"
#include "serving/http/kserve_json.h"
#ifdef TORCHSHIP_GRPC
#include "serving/grpc/request_conversion.h"
#endif
#include "torchship/torchship.h"

namespace {

using namespace torchship;
using nlohmann::json;
using Target = std::function<void(std::string_view)>;

// Types a JSON tree may be asked to become, picked by the input's first byte.
std::vector<c10::TypePtr> tree_types() {
  auto tensor = c10::TensorType::get();
  auto list = c10::ListType::create(tensor);
  return {tensor,
          list,
          c10::DictType::create(c10::StringType::get(), tensor),
          c10::DictType::create(c10::IntType::get(), list),
          c10::TupleType::create({tensor, c10::IntType::get()}),
          c10::OptionalType::create(c10::FloatType::get()),
          c10::UnionType::create({tensor, c10::StringType::get()}),
          c10::StringType::get()};
}

json parse_json(std::string_view bytes) {
  return json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
}

// The archive opener reads a path: the bytes go to an in-memory file named by /proc.
std::string as_file(std::string_view bytes) {
  static int fd = memfd_create("fuzz_archive", 0);
  if (ftruncate(fd, 0) != 0 || pwrite(fd, bytes.data(), bytes.size(), 0) < 0) std::abort();
  return "/proc/self/fd/" + std::to_string(fd);
}

std::unique_ptr<Model> fuzz_model;  // input_spec: the model whose forward arguments are parsed

std::map<std::string, Target> targets() {
  return {
      {"npy", [](std::string_view bytes) { parse_npy(bytes, "fuzz.npy"); }},
      {"json_tree",
       [](std::string_view bytes) {
         static const auto types = tree_types();
         if (bytes.empty()) return;
         const auto& type = types[static_cast<uint8_t>(bytes[0]) % types.size()];
         json tree = parse_json(bytes.substr(1));
         if (tree.is_discarded()) return;
         c10::IValue value = from_json(tree, type, "input 'x'");
         to_json(value).dump();
       }},
      {"kserve",
       [](std::string_view bytes) {
         // First line: the Inference-Header-Content-Length header when it starts with 'H'; a
         // body to inflate first (Content-Encoding: gzip) when it starts with 'Z'.
         auto newline = bytes.find('\n');
         if (newline == std::string_view::npos) return;
         std::string first(bytes.substr(0, newline));
         std::string_view body = bytes.substr(newline + 1);
         std::string inflated;
         if (!first.empty() && first[0] == 'Z') {
           try {
             inflated = serving::inflate_body(body, "gzip", 1 << 20);
           } catch (const serving::BodyTooLarge&) {
             return;
           }
           body = inflated;
         }
         std::string length = first.empty() ? "" : first.substr(1);
         bool has_length = !first.empty() && first[0] == 'H';
         auto request = serving::parse_infer_request(body, has_length ? &length : nullptr);
         std::vector<serving::NamedTensor> outputs;
         for (auto& input : request.inputs) outputs.push_back({input.name, input.tensor});
         serving::infer_response("m", "1", request.id, serving::chosen_outputs(request, outputs));
       }},
      {"manifest", [](std::string_view bytes) { Manifest::parse(std::string(bytes)); }},
      {"golden_index",
       [](std::string_view bytes) {
         GoldenIndex index = parse_golden_index(std::string(bytes), "fuzz.pt");
         NpyResolver resolve = [](const std::string& name) -> at::Tensor {
           throw bad_model("golden file " + name + " is missing");
         };
         for (const auto& golden : index.tree["cases"]) {
           for (const auto& input : golden["inputs"]) {
             from_json(input, c10::TensorType::get(), "golden input", resolve);
           }
         }
       }},
      {"archive",
       [](std::string_view bytes) {
         Archive archive = Archive::open(as_file(bytes));
         for (const auto& name : archive.extra_files()) archive.read_extra(name);
       }},
      {"input_spec",
       [](std::string_view bytes) {
         if (bytes.empty() || !fuzz_model) return;
         size_t index = static_cast<uint8_t>(bytes[0]) % fuzz_model->inputs().size();
         input_from_spec(*fuzz_model, index, std::string(bytes.substr(1)));
       }},
      {"image",
       [](std::string_view bytes) {
         // An oracle beyond "no crash": whatever passes the header check must decode to no more
         // pixels than the limit, or the header parser and the decoder disagree (a bypass).
         // A small limit keeps each decode fast.
         constexpr int64_t kLimit = 1 << 20;
         ImageSpec spec;  // no resize: the decoded size is the decoder's own
         if (!bytes.empty() && bytes[0] % 2) spec.color = ColorOrder::Gray;
         at::Tensor image = decode_image_bytes(bytes, spec, "upload", Decode::Exact, kLimit);
         if (image.size(0) * image.size(1) > kLimit) {
           std::fprintf(stderr, "decoded %lld x %lld pixels past a limit of %lld\n",
                        static_cast<long long>(image.size(1)),
                        static_cast<long long>(image.size(0)), static_cast<long long>(kLimit));
           std::abort();
         }
       }},
#ifdef TORCHSHIP_GRPC
      {"grpc_request",
       [](std::string_view bytes) {
         // A serialized ModelInferRequest, as the gRPC front receives it: bytes protobuf
         // cannot parse are refused by gRPC before torchship sees them.
         inference::ModelInferRequest message;
         if (!message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return;
         serving::InferRequest request = serving::request_from_proto(message);
         std::vector<std::pair<serving::NamedTensor, bool>> outputs;
         for (auto& input : request.inputs) outputs.push_back({{input.name, input.tensor}, true});
         inference::ModelInferResponse response;
         serving::response_from_outputs({"m", "1"}, message, outputs, response);
       }},
#endif
  };
}

Target selected;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* name = std::getenv("TORCHSHIP_FUZZ_TARGET");
  auto all = targets();
  if (!name || !all.count(name)) {
    std::string names;
    for (const auto& [known, target] : all) names += " " + known;
    std::fprintf(stderr, "set TORCHSHIP_FUZZ_TARGET to one of:%s\n", names.c_str());
    std::exit(2);
  }
  selected = all[name];
  if (std::string(name) == "input_spec") {
    const char* model = std::getenv("TORCHSHIP_FUZZ_MODEL");
    if (!model) {
      std::fprintf(stderr, "input_spec needs TORCHSHIP_FUZZ_MODEL (an archive)\n");
      std::exit(2);
    }
    fuzz_model = std::make_unique<Model>(Model::load(model, LoadOptions().with_warmup(0)));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    selected(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const torchship::Error&) {
    // The expected way to refuse bad input. Anything else escapes and aborts: a finding.
  }
  return 0;
}
