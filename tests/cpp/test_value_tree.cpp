// Output trees: walking and naming leaves.

#include <gtest/gtest.h>

#include "torchship/value_tree.h"

namespace torchship::testing {
namespace {

TEST(ValueTree, OneWayToNameLeaves) {
  Manifest manifest;
  manifest.outputs = {TensorSpec{"logits"}, TensorSpec{"labels"}};
  auto names = [](const c10::IValue& value, const Manifest* m) {
    std::vector<std::string> paths;
    for (const auto& leaf : output_leaves(value, m)) paths.push_back(leaf.path);
    return paths;
  };
  auto pair = c10::ivalue::Tuple::create({at::zeros({1}), at::ones({2})});
  EXPECT_EQ(names(pair, &manifest), (std::vector<std::string>{"logits", "labels"}));
  EXPECT_EQ(names(pair, nullptr), (std::vector<std::string>{"output[0]", "output[1]"}));
  EXPECT_EQ(names(at::zeros({1}), &manifest), (std::vector<std::string>{"logits"}));
  EXPECT_EQ(names(at::zeros({1}), nullptr), (std::vector<std::string>{"output"}));
  EXPECT_EQ(file_name_of("output[0].boxes"), "output_0_boxes");
  // A named tuple's fields stand in for output[i], unless the manifest names the outputs.
  std::vector<std::string> fields = {"boxes", "scores"};
  std::vector<c10::TypePtr> types = {c10::TensorType::get(), c10::TensorType::get()};
  auto type = c10::TupleType::createNamed(c10::QualifiedName("Detections"), fields, types);
  auto detections =
      c10::ivalue::Tuple::createNamed({at::zeros({2, 4}), at::zeros({2})}, std::move(type));
  EXPECT_EQ(names(detections, nullptr), (std::vector<std::string>{"boxes", "scores"}));
  EXPECT_EQ(names(detections, &manifest), (std::vector<std::string>{"logits", "labels"}));
  EXPECT_EQ(file_name_of("a/b c"), "a_b_c");
}

TEST(ValueTree, MapLeavesKeepsTheStructure) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  dict.insert("boxes", at::ones({2, 4}));
  c10::impl::GenericList list(
      c10::DictType::create(c10::StringType::get(), c10::TensorType::get()));
  list.push_back(dict);
  c10::IValue doubled =
      map_leaves(list, [](const c10::IValue& leaf) { return c10::IValue(leaf.toTensor() * 2); });
  auto leaves = output_leaves(doubled, nullptr);
  ASSERT_EQ(leaves.size(), 1u);
  EXPECT_EQ(leaves[0].path, "output[0].boxes");
  EXPECT_TRUE(leaves[0].value.toTensor().equal(at::full({2, 4}, 2.0)));
}

}  // namespace
}  // namespace torchship::testing
