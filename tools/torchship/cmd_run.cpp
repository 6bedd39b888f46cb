// torchship run MODEL --input SPEC ...: call forward with any inputs, print or save the outputs.
#include <cstdio>
#include <iostream>

#include <ATen/ATen.h>

#include "cli_common.h"

namespace torchship::cli {
namespace {

namespace fs = std::filesystem;

struct RunOptions {
  ModelOptions model;
  std::vector<std::string> inputs;
  bool json = false;
  std::string out_dir;
};

// Names of the leaves of an output tree: "[1][0].boxes" for people, "1_0_boxes" for files.
enum class Naming { Path, File };

std::string child_name(const std::string& parent, const std::string& child, bool is_index,
                       Naming naming) {
  if (naming == Naming::File) return parent.empty() ? child : parent + "_" + child;
  if (is_index) return parent + "[" + child + "]";
  return parent.empty() ? child : parent + "." + child;
}

std::vector<std::string> top_level_names(const Model& model, const c10::IValue& output) {
  std::vector<std::string> names;
  if (!output.isTuple()) return names;
  const auto& manifest = model.manifest();
  size_t count = output.toTupleRef().elements().size();
  if (manifest && manifest->outputs.size() == count) {
    for (const auto& spec : manifest->outputs) names.push_back(spec.name);
  }
  return names;
}

void for_each_leaf(const c10::IValue& value, const std::string& name, Naming naming,
                   const std::function<void(const std::string&, const c10::IValue&)>& visit,
                   const std::vector<std::string>& tuple_names = {}) {
  if (value.isTuple() || value.isList()) {
    std::vector<c10::IValue> items =
        value.isTuple() ? value.toTupleRef().elements().vec() : value.toListRef().vec();
    std::vector<std::string> names = tuple_names;
    if (names.empty() && value.isTuple()) {
      if (auto fields = value.type()->expect<c10::TupleType>()->names()) {  // a NamedTuple
        for (const auto& field : *fields) names.emplace_back(field.data(), field.size());
      }
    }
    for (size_t i = 0; i < items.size(); ++i) {
      bool named = i < names.size();
      std::string child = named ? names[i] : std::to_string(i);
      for_each_leaf(items[i], child_name(name, child, !named, naming), naming, visit);
    }
  } else if (value.isGenericDict()) {
    for (const auto& entry : value.toGenericDict()) {
      const c10::IValue& key = entry.key();
      std::string child = key.isString() ? key.toStringRef()
                          : key.isInt()  ? std::to_string(key.toInt())
                                         : "key";
      for_each_leaf(entry.value(), child_name(name, child, false, naming), naming, visit);
    }
  } else {
    visit(name, value);
  }
}

std::string tensor_stats(const at::Tensor& tensor) {
  if (tensor.numel() == 0 || tensor.scalar_type() == at::kBool) return "";
  at::Tensor values = tensor.to(at::kCPU).to(at::kDouble);
  char text[128];
  std::snprintf(text, sizeof text, "min %.6g  max %.6g  mean %.6g", values.min().item<double>(),
                values.max().item<double>(), values.mean().item<double>());
  return text;
}

void print_summary(const Model& model, const c10::IValue& output) {
  std::cout << "output: " << describe(output) << '\n';
  if (output.isTensor()) {
    std::cout << "  " << tensor_stats(output.toTensor()) << '\n';
    return;
  }
  for_each_leaf(
      output, "", Naming::Path,
      [](const std::string& name, const c10::IValue& leaf) {
        std::string line = "  " + name + ": " + describe(leaf);
        if (leaf.isTensor()) line += "  " + tensor_stats(leaf.toTensor());
        std::cout << line << '\n';
      },
      top_level_names(model, output));
}

void write_outputs(const Model& model, const c10::IValue& output, const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw bad_input("cannot create output folder " + dir.string() + ": " + ec.message());
  std::string root = output.isTensor() ? "output" : "";
  for_each_leaf(
      output, root, Naming::File,
      [&](const std::string& name, const c10::IValue& leaf) {
        if (!leaf.isTensor()) return;
        fs::path file = dir / (name + ".npy");
        write_npy(file, leaf.toTensor());
        std::cerr << "wrote " << file.string() << '\n';
      },
      top_level_names(model, output));
}

int run_forward(const RunOptions& options) {
  Model model = load_model(options.model, 1);
  model.check_input_count(options.inputs.size());
  std::vector<c10::IValue> inputs;
  for (size_t i = 0; i < options.inputs.size(); ++i) {
    inputs.push_back(input_from_spec(model, i, options.inputs[i]));
  }
  c10::IValue output = model.forward(std::move(inputs));
  if (!options.out_dir.empty()) write_outputs(model, output, options.out_dir);
  if (options.json) {
    print_json({{"outputs", to_json(output)}});
  } else {
    print_summary(model, output);
  }
  return 0;
}

}  // namespace

Command add_run_command(CLI::App& app) {
  auto* command = app.add_subcommand("run", "call forward with the given inputs");
  auto options = std::make_shared<RunOptions>();
  add_model_options(*command, options->model);
  command
      ->add_option("--input,-i", options->inputs,
                   "one per forward argument, in order: x.npy, photo.png, [a.npy,b.png], "
                   "tree.json or inline JSON")
      ->allow_extra_args(false);  // keep "[a.npy,b.png]" whole: it is one list argument
  command->add_flag("--json", options->json, "print {\"outputs\": TREE} as one JSON object");
  command->add_option("--out", options->out_dir, "write each output tensor as DIR/NAME.npy");
  return {command, [options] { return run_forward(*options); }};
}

}  // namespace torchship::cli
