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
  const auto& manifest = model.manifest();
  for (const auto& leaf : output_leaves(output, manifest ? &*manifest : nullptr)) {
    std::string line = "  " + leaf.path + ": " + describe(leaf.value);
    if (leaf.value.isTensor()) line += "  " + tensor_stats(leaf.value.toTensor());
    std::cout << line << '\n';
  }
}

// Each output tensor as DIR/<its path as a file name>.npy: output_0_boxes.npy, logits.npy.
void write_outputs(const Model& model, const c10::IValue& output, const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw bad_input("cannot create output folder " + dir.string() + ": " + ec.message());
  const auto& manifest = model.manifest();
  for (const auto& leaf : output_leaves(output, manifest ? &*manifest : nullptr)) {
    if (!leaf.value.isTensor()) continue;
    fs::path file = dir / (file_name_of(leaf.path) + ".npy");
    write_npy(file, leaf.value.toTensor());
    std::cerr << "wrote " << file.string() << '\n';
  }
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
