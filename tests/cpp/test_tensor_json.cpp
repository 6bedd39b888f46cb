// Values as JSON trees (the KServe v2 tensor encoding): conversions, and hostile JSON.

#include <ATen/ATen.h>

#include "fixtures.h"
#include "torchship/image.h"
#include "torchship/json_input.h"
#include "torchship/limits.h"
#include "torchship/tensor_json.h"

namespace torchship {
namespace {

using nlohmann::json;
using testing::error_message;

TEST(TensorJson, EncodesTensorsInKServeV2Form) {
  json tree = tensor_to_json(at::arange(6, at::kInt).reshape({2, 3}));
  EXPECT_EQ(tree, json::parse(R"({"datatype":"INT32","shape":[2,3],"data":[0,1,2,3,4,5]})"));
  EXPECT_EQ(tensor_to_json(at::tensor({1, 0}).to(at::kBool))["data"], json::parse("[true,false]"));
  EXPECT_EQ(tensor_to_json(at::ones({1}, at::kHalf))["datatype"], "FP16");
}

TEST(TensorJson, DecodesFlatAndNestedData) {
  auto flat = json::parse(R"({"datatype":"FP32","shape":[2,2],"data":[1,2,3,4.5]})");
  auto nested = json::parse(R"({"datatype":"FP32","shape":[2,2],"data":[[1,2],[3,4.5]]})");
  at::Tensor expected = at::tensor({1.0f, 2.0f, 3.0f, 4.5f}).reshape({2, 2});
  EXPECT_TRUE(at::equal(tensor_from_json(flat, "x"), expected));
  EXPECT_TRUE(at::equal(tensor_from_json(nested, "x"), expected));
  auto bf16 = json::parse(R"({"datatype":"BF16","shape":[1],"data":[0.5]})");
  EXPECT_EQ(tensor_from_json(bf16, "x").scalar_type(), c10::kBFloat16);
}

TEST(TensorJson, SaysWhatWasExpectedAndWhatCame) {
  EXPECT_EQ(error_message([] {
              tensor_from_json(json::array({1, 2}), "input 'x'");
            }),
            "input 'x': expected a tensor object {\"datatype\", \"shape\", \"data\"}, got an "
            "array of 2");
  EXPECT_EQ(error_message([] {
              tensor_from_json(json::parse(R"({"datatype":"FP32","shape":[3],"data":[1,2]})"),
                               "input 'x'");
            }),
            "input 'x': shape [3] needs 3 values, \"data\" has 2");
  EXPECT_EQ(error_message([] {
              tensor_from_json(json::parse(R"({"datatype":"FLOAT","shape":[1],"data":[1]})"),
                               "input 'x'");
            }),
            "input 'x': unknown tensor datatype \"FLOAT\" (expected BOOL, UINT8, INT8, INT16, "
            "INT32, INT64, FP16, FP32, FP64 or BF16)");
  EXPECT_EQ(error_message([] {
              tensor_from_json(json::parse(R"({"datatype":"UINT8","shape":[1],"data":[300]})"),
                               "input 'x'");
            }),
            "input 'x' data[0]: 300 is out of range for UINT8");
  EXPECT_EQ(error_message([] {
              tensor_from_json(json::parse(R"({"datatype":"INT64","shape":[1],"data":[1.5]})"),
                               "input 'x'");
            }),
            "input 'x' data[0]: expected an integer for INT64, got a number");
}

TEST(ValueJson, RoundTripsContainersThroughTheirTypes) {
  auto list_type = c10::ListType::ofTensors();
  auto tuple_type = c10::TupleType::create({c10::IntType::get(), c10::StringType::get()});
  auto dict_type = c10::DictType::create(c10::StringType::get(), c10::TensorType::get());
  auto optional_type = c10::OptionalType::create(c10::FloatType::get());

  auto tree = json::parse(R"([{"datatype":"INT64","shape":[2],"data":[1,2]}])");
  c10::IValue list = from_json(tree, list_type, "xs");
  EXPECT_EQ(to_json(list), tree);

  c10::IValue tuple = from_json(json::parse(R"([3, "cat"])"), tuple_type, "pair");
  EXPECT_EQ(tuple.toTupleRef().elements()[1].toStringRef(), "cat");
  EXPECT_EQ(to_json(tuple), json::parse(R"([3, "cat"])"));

  auto dict_tree = json::parse(R"({"a":{"datatype":"FP64","shape":[],"data":[2.5]}})");
  c10::IValue dict = from_json(dict_tree, dict_type, "table");
  EXPECT_EQ(to_json(dict), dict_tree);

  EXPECT_TRUE(from_json(nullptr, optional_type, "scale").isNone());
  EXPECT_DOUBLE_EQ(from_json(0.5, optional_type, "scale").toDouble(), 0.5);
  EXPECT_EQ(to_json(c10::IValue()), json(nullptr));
}

TEST(ValueJson, UnionsTakeTheFirstAlternativeThatFits) {
  auto union_type = c10::UnionType::create({c10::ListType::ofTensors(), c10::TensorType::get()});
  auto tensor = json::parse(R"({"datatype":"UINT8","shape":[1],"data":[7]})");
  EXPECT_TRUE(from_json(tensor, union_type, "images").isTensor());
  EXPECT_TRUE(from_json(json::array({tensor}), union_type, "images").isList());
  EXPECT_EQ(error_message([&] { from_json("text", union_type, "images"); }),
            "images: expected Tensor or List[Tensor], got a string");
}

TEST(ValueJson, NamesTheFieldThatDoesNotFit) {
  auto tuple_type = c10::TupleType::create({c10::IntType::get(), c10::StringType::get()});
  EXPECT_EQ(error_message([&] { from_json(json::parse("[1, 2]"), tuple_type, "input 'pair'"); }),
            "input 'pair'[1]: expected a string, got an integer");
  EXPECT_EQ(error_message([&] { from_json(json::parse("[1]"), tuple_type, "input 'pair'"); }),
            "input 'pair': expected an array of 2 for Tuple[int, str], got an array of 1");
  auto dict_type = c10::DictType::create(c10::IntType::get(), c10::FloatType::get());
  EXPECT_EQ(error_message([&] { from_json(json::parse(R"({"x": 1.0})"), dict_type, "d"); }),
            "d: expected integer keys, got \"x\"");
}

TEST(TensorJson, ShapesThatDoNotFitTheDataAreRefusedBeforeAllocating) {
  auto tensor = [](const std::string& text) { tensor_from_json(json::parse(text), "input 'a'"); };
  EXPECT_EQ(
      error_message([&] { tensor(R"({"datatype":"FP32","shape":[1000000000000],"data":[1]})"); }),
      "input 'a': shape [1000000000000] needs 1000000000000 values, \"data\" has 1");
  EXPECT_EQ(error_message([&] {
              tensor(R"({"datatype":"FP32","shape":[4611686018427387904,4],"data":[1]})");
            }),
            "input 'a': shape [4611686018427387904, 4] has more elements than a tensor can hold");
  EXPECT_EQ(error_message([&] {
              tensor(R"({"datatype":"FP32","shape":[18446744073709551615],"data":[1]})");
            }),
            "input 'a': \"shape\" must hold non-negative integers, got [18446744073709551615]");
  std::string deep = std::string(100, '[') + "1" + std::string(100, ']');
  EXPECT_EQ(
      error_message([&] { tensor(R"({"datatype":"FP32","shape":[1],"data":)" + deep + "}"); }),
      "input 'a': \"data\" nests arrays deeper than 64 levels");
  json many_dims = {{"datatype", "FP32"}, {"shape", std::vector<int>(65, 1)}, {"data", {1}}};
  EXPECT_EQ(error_message([&] { tensor_from_json(many_dims, "input 'a'"); }),
            "input 'a': a tensor has at most 64 dimensions, \"shape\" has 65");
}

TEST(Json, NestingFromOutsideIsBoundedBeforeTheTreeIsBuilt) {
  std::string deep = R"({"inputs": [0], "id": )";
  deep.append(100000, '[').append(100000, ']').append("}");
  EXPECT_EQ(error_message([&] { parse_json(deep, "the request"); }),
            "the request nests arrays and objects deeper than 128 levels");
  EXPECT_TRUE(parse_json("[[1]]", "x").is_array());
  EXPECT_TRUE(parse_json("[[1]", "x").is_discarded());
}

}  // namespace
}  // namespace torchship
