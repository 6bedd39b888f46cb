// torchship info MODEL: what an archive holds and how to call it.
#include <iostream>

#include "cli_common.h"
#include "core/text.h"

namespace torchship::cli {
namespace {

using nlohmann::json;

std::string describe_spec(const TensorSpec& spec) {
  std::string text = spec.name;
  if (!spec.datatype.empty()) text += "  " + spec.datatype;
  if (!spec.shape.empty()) text += " " + shape_text(spec.shape);
  if (!spec.layout.empty()) text += " " + spec.layout;
  if (spec.image) {
    text += std::string(", ") + to_string(spec.image->color);
    if (spec.image->resize.mode == ResizeMode::Stretch) {
      text += ", resized to " + std::to_string(spec.image->resize.height) + "x" +
              std::to_string(spec.image->resize.width);
    }
  }
  if (!spec.kind.empty()) text += " (" + spec.kind + ")";
  return text;
}

// "2 cases recorded at export" from the golden index, or "none".
std::string golden_summary(const Archive& archive) {
  auto index = archive.read_extra(kGoldenIndexFile);
  if (!index) return "none";
  json parsed = json::parse(*index, nullptr, /*allow_exceptions=*/false);
  size_t cases = parsed.is_object() && parsed.contains("cases") ? parsed["cases"].size() : 0;
  return std::to_string(cases) + (cases == 1 ? " case" : " cases") + " recorded at export";
}

// An archive of every form: the forms it holds, with their sizes, and those left out.
json forms_json(const ExportInfo& exported) {
  json forms = json::array(), left_out = json::array();
  for (const auto& form : exported.forms) {
    forms.push_back({{"format", form.format}, {"bytes", form.bytes}, {"seconds", form.seconds}});
  }
  for (const auto& form : exported.left_out) {
    left_out.push_back({{"format", form.format}, {"reason", form.reason}});
  }
  return {{"forms", forms}, {"left_out", left_out}};
}

// The rows an archive of every form adds: its forms, the one chosen here and why.
void show_forms(const ExportInfo& exported, const Model& model,
                const std::function<void(const std::string&, const std::string&)>& row) {
  std::string forms;
  for (const auto& form : exported.forms) {
    forms += (forms.empty() ? "" : ", ") + form.format + " " + human_bytes(form.bytes);
  }
  row("format", "every form, chosen at load: " + forms);
  for (const auto& form : exported.left_out) {
    row("left out", form.format + ": " + form.reason);
  }
  for (const auto& note : model.notes()) {
    if (note.rfind("engine: ", 0) == 0) row("engine", note.substr(8));
    if (note.rfind("precision: ", 0) == 0) row("precision", note.substr(11));
  }
}

using Row = std::function<void(const std::string&, const std::string&)>;

// What `info` shows, read once for both the JSON and the text form.
struct InfoSubject {
  const ModelOptions& options;
  const Model& model;
  const Archive& archive;  // as stored: an archive of every form lists all its forms
  bool every_form;
  int64_t file_size;
};

json info_json(const InfoSubject& subject) {
  const Model& model = subject.model;
  ModelSummary summary = model.summary();
  const auto& manifest = model.manifest();
  json out;
  out["path"] = subject.options.path;
  out["file_bytes"] = subject.file_size;
  out["format"] = format_id(subject.archive.format());
  out["engine"] = format_id(model.format());
  if (subject.every_form) out.update(forms_json(subject.archive.manifest()->exported));
  out["manifest"] = manifest ? json::parse(manifest->source) : json(nullptr);
  out["methods"] = summary.methods;
  out["signature"] = model.signature();
  json inputs = json::array();
  for (const auto& argument : model.inputs()) {
    inputs.push_back({{"name", argument.name},
                      {"type", argument.type_name()},
                      {"has_default", argument.has_default}});
  }
  out["inputs"] = inputs;
  out["output_type"] = model.output_type()->annotation_str();
  out["parameter_count"] = summary.parameter_count;
  out["parameter_bytes"] = summary.parameter_bytes;
  out["golden"] = model.archive().has_golden();
  out["threads"] = intra_op_threads();
  out["available_cpus"] = available_cpus();
  return out;
}

// The manifest's name, task, how and for which CPU it was exported.
void show_origin(const Manifest& manifest, const Row& row) {
  if (!manifest.name.empty()) row("name", manifest.name);
  std::string task = manifest.task;
  if (!manifest.labels.empty()) task += " (" + std::to_string(manifest.labels.size()) + " labels)";
  row("task", task);
  const auto& exported = manifest.exported;
  if (!exported.method.empty()) {
    std::string text = exported.method;
    if (!exported.torch_version.empty()) text += " with torch " + exported.torch_version;
    if (!exported.created.empty()) text += ", " + exported.created;
    row("exported", text);
  }
  const auto& cpu = exported.cpu;
  if (!cpu.target.empty()) {
    std::string features;
    for (const auto& feature : cpu.features) features += (features.empty() ? "" : " ") + feature;
    row("cpu", cpu.target + (cpu.vec_isa.empty() ? "" : ", vectorized for " + cpu.vec_isa) +
                   (features.empty() ? "" : "; needs " + features));
  }
}

// The manifest's inputs and outputs, batch dimension and precision.
void show_tensors(const Manifest& manifest, bool every_form, const Row& row) {
  for (size_t i = 0; i < manifest.inputs.size(); ++i) {
    row(i == 0 ? "inputs" : "", describe_spec(manifest.inputs[i]));
  }
  for (size_t i = 0; i < manifest.outputs.size(); ++i) {
    row(i == 0 ? "outputs" : "", describe_spec(manifest.outputs[i]));
  }
  if (manifest.batch_dim) row("batch", "first dimension of inputs and outputs");
  if (!every_form) row("precision", manifest.precision);
}

void print_info(const InfoSubject& subject) {
  const Model& model = subject.model;
  const auto& manifest = model.manifest();
  Row row = [](const std::string& key, const std::string& value) {
    std::cout << key << std::string(key.size() < 10 ? 10 - key.size() : 1, ' ') << value << '\n';
  };
  bool compiled = model.format() == ModelFormat::AOTInductor;
  row("archive", subject.options.path + " (" + human_bytes(subject.file_size) + ")");
  if (subject.every_form) show_forms(subject.archive.manifest()->exported, model, row);
  row(subject.every_form ? "runs" : "format",
      compiled ? "AOTInductor package (compiled ahead of time)"
      : model.format() == ModelFormat::OpenVINO
          ? "OpenVINO IR (compiled at load, " + model.precision() + ")"
          : "TorchScript");
  if (manifest) {
    show_origin(*manifest, row);
  } else {
    row("manifest", compiled ? "none (plain package: generic inputs and outputs only)"
                             : "none (plain TorchScript: generic inputs and outputs only)");
  }
  row("forward", model.signature());
  if (manifest) show_tensors(*manifest, subject.every_form, row);
  ModelSummary summary = model.summary();
  row("methods", join(summary.methods));
  row("params", group_digits(summary.parameter_count) + " (" +
                    human_bytes(summary.parameter_bytes) + " with buffers)");
  row("golden", golden_summary(model.archive()));
  row("threads", threads_summary());
}

int run_info(const ModelOptions& options, bool as_json) {
  Model model = load_model(options, 0);           // describes the module as stored
  Archive archive = Archive::open(options.path);  // an archive of every form: all of them
  bool every_form = archive.format() == ModelFormat::Auto && archive.manifest();
  std::error_code ec;
  auto file_size = static_cast<int64_t>(std::filesystem::file_size(options.path, ec));
  InfoSubject subject{options, model, archive, every_form, file_size};
  if (as_json) {
    print_json(info_json(subject));
  } else {
    print_info(subject);
  }
  return 0;
}

}  // namespace

Command add_info_command(CLI::App& app) {
  auto* command = app.add_subcommand("info", "show an archive's manifest, schema and size");
  auto options = std::make_shared<ModelOptions>();
  auto as_json = std::make_shared<bool>(false);
  add_model_options(*command, *options);
  command->add_flag("--json", *as_json, "print one JSON object");
  return {command, [options, as_json] { return run_info(*options, *as_json); }};
}

}  // namespace torchship::cli
