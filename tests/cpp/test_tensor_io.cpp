// .npy files and JSON trees: round trips, NumPy interoperability, exact error messages.
#include <fstream>

#include <ATen/ATen.h>

#include "fixtures.h"
#include "torchship/tensor_io.h"

namespace torchship {
namespace {

using nlohmann::json;
using testing::error_message;
using testing::fixture;

std::filesystem::path temp_file(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("torchship_test_" + name);
}

TEST(Npy, RoundTripsEveryNumericDtype) {
  const c10::ScalarType types[] = {
      c10::kBool, c10::kByte,  c10::kChar,   c10::kShort,        c10::kInt,          c10::kLong,
      c10::kHalf, c10::kFloat, c10::kDouble, c10::kComplexFloat, c10::kComplexDouble};
  for (auto type : types) {
    at::Tensor original = (at::arange(24, at::kDouble).reshape({2, 3, 4}) - 7).to(type);
    at::Tensor back = parse_npy(encode_npy(original), "memory");
    EXPECT_EQ(back.scalar_type(), type) << c10::toString(type);
    EXPECT_TRUE(at::equal(back, original)) << c10::toString(type);
  }
}

TEST(Npy, RoundTripsScalarsEmptyAndNonContiguousTensors) {
  at::Tensor scalar = at::scalar_tensor(3.5, at::kFloat);
  EXPECT_TRUE(at::equal(parse_npy(encode_npy(scalar), "m"), scalar));
  at::Tensor empty = at::zeros({0, 3}, at::kLong);
  EXPECT_EQ(parse_npy(encode_npy(empty), "m").sizes(), empty.sizes());
  at::Tensor transposed = at::arange(6, at::kInt).reshape({2, 3}).t();
  EXPECT_TRUE(at::equal(parse_npy(encode_npy(transposed), "m"), transposed));
}

TEST(Npy, WritesFilesThatReadBack) {
  auto path = temp_file("roundtrip.npy");
  at::Tensor original = at::rand({5, 7});
  write_npy(path, original);
  EXPECT_TRUE(at::equal(read_npy(path), original));
  std::filesystem::remove(path);
}

TEST(Npy, ReadsWhatNumPyWrote) {
  at::Tensor logits = read_npy(fixture("classifier_chelsea.npy"));
  EXPECT_EQ(logits.scalar_type(), c10::kFloat);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{1, 1000}));
  at::Tensor batch = read_npy(fixture("segmentation_batch_input.npy"));
  EXPECT_EQ(batch.scalar_type(), c10::kByte);
  EXPECT_EQ(batch.sizes(), (std::vector<int64_t>{2, 72, 88, 3}));
}

TEST(Npy, RejectsFortranOrder) {
  auto path = fixture("fortran.npy");
  EXPECT_EQ(error_message([&] { read_npy(path); }),
            "cannot read " + path.string() +
                " as .npy: Fortran-order arrays are not supported; save with "
                "numpy.save(path, numpy.ascontiguousarray(array))");
}

TEST(Npy, RejectsWhatIsNotNpy) {
  EXPECT_EQ(error_message([] { parse_npy("hello world, this is text", "x.npy"); }),
            "cannot read x.npy as .npy: not a .npy file (no \\x93NUMPY magic)");
  std::string bytes = encode_npy(at::ones({100}));
  EXPECT_EQ(error_message([&] { parse_npy(bytes.substr(0, bytes.size() - 8), "cut.npy"); }),
            "cannot read cut.npy as .npy: truncated data (the header's shape [100] needs 400 "
            "bytes, the file has 392)");
  EXPECT_EQ(error_message([] { read_npy("/nonexistent/x.npy"); }),
            "cannot read /nonexistent/x.npy: no such file or not readable");
}

TEST(Npy, RejectsDtypesLibtorchLacks) {
  std::string bytes = encode_npy(at::ones({2}, at::kShort));
  auto at = bytes.find("<i2");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 3, "<u2");
  EXPECT_EQ(error_message([&] { parse_npy(bytes, "u16.npy"); }),
            "cannot read u16.npy as .npy: dtype uint16 has no libtorch equivalent; save it as "
            "int32 instead");
}

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

}  // namespace
}  // namespace torchship
