#include "torchship/golden.h"

#include <cmath>

#include <ATen/ATen.h>

#include "archive/golden_index.h"
#include "core/torch_compat.h"
#include "torchship/error.h"
#include "torchship/limits.h"
#include "torchship/npy.h"
#include "torchship/tensor_json.h"
#include "torchship/value_tree.h"

namespace torchship {
namespace {

using nlohmann::json;

constexpr double kBf16Rtol = 1e-2;  // torchship.tolerance.DEFAULT_RTOL["bf16"]

class Comparer {
 public:
  // `widen` scales each output's recorded atol as it scaled rtol and atol (a precision chosen
  // at load).
  Comparer(double rtol, double atol, double widen, const NpyResolver& resolve)
      : rtol_(rtol), atol_(atol), widen_(widen), resolve_(resolve) {}

  void compare(const c10::IValue& actual, const json& expected, const std::string& path,
               std::vector<GoldenLeaf>& leaves) const {
    if (is_tensor_tree(expected)) {
      leaves.push_back(compare_tensor(actual, expected, path));
    } else if (expected.is_array()) {
      std::vector<c10::IValue> items;
      if (actual.isTuple()) items = actual.toTupleRef().elements().vec();
      if (actual.isList()) items = actual.toListRef().vec();
      if ((!actual.isTuple() && !actual.isList()) || items.size() != expected.size()) {
        leaves.push_back(failure(path, "expected a sequence of " + std::to_string(expected.size()) +
                                           ", got " + describe(actual)));
        return;
      }
      for (size_t i = 0; i < items.size(); ++i) {
        compare(items[i], expected[i], path + index_step(i), leaves);
      }
    } else if (expected.is_object()) {
      json actual_tree = actual.isGenericDict() || actual.isTuple() ? shallow_keys(actual) : json();
      if (!actual_tree.is_object() || actual_tree.size() != expected.size()) {
        leaves.push_back(failure(path, "expected an object of " + std::to_string(expected.size()) +
                                           " fields, got " + describe(actual)));
        return;
      }
      for (const auto& [key, value] : expected.items()) {
        c10::IValue item = field(actual, key);
        if (item.isNone() && !value.is_null() && !actual_tree.contains(key)) {
          leaves.push_back(failure(path + "." + key, "missing"));
          continue;
        }
        compare(item, value, path + "." + key, leaves);
      }
    } else {
      // Plain values: floats by the rule with their own scaled atol, everything else exactly.
      json got = to_json(actual);
      bool floats = expected.is_number_float() && got.is_number();
      double want = floats ? expected.get<double>() : 0;
      double atol = rtol_ * std::max(1.0, std::abs(want));
      bool equal = floats ? std::abs(got.get<double>() - want) <= atol + rtol_ * std::abs(want)
                          : got == expected;
      leaves.push_back(equal
                           ? GoldenLeaf{path, 0, 0, floats ? atol : 0, true, ""}
                           : failure(path, "expected " + expected.dump() + ", got " + got.dump()));
    }
  }

 private:
  static bool is_tensor_tree(const json& tree) {
    return tree.is_object() && tree.contains("datatype") && tree.contains("shape");
  }

  // The keys of a dict or named tuple, to compare field sets.
  static json shallow_keys(const c10::IValue& value) {
    json keys = json::object();
    if (value.isGenericDict()) {
      for (const auto& entry : value.toGenericDict()) keys[key_text(entry.key())] = true;
    } else {
      for (const auto& name : field_names(value)) keys[name] = true;
    }
    return keys;
  }

  static c10::IValue field(const c10::IValue& value, const std::string& key) {
    if (value.isGenericDict()) {
      for (const auto& entry : value.toGenericDict()) {
        if (key_text(entry.key()) == key) return entry.value();
      }
      return c10::IValue();
    }
    auto names = field_names(value);
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == key) return value.toTupleRef().elements()[i];
    }
    return c10::IValue();
  }

  static GoldenLeaf failure(const std::string& path, const std::string& problem) {
    return {path, 0, 0, 0, false, problem};
  }

  GoldenLeaf compare_tensor(const c10::IValue& actual, const json& expected_tree,
                            const std::string& path) const {
    if (!actual.isTensor()) return failure(path, "expected a tensor, got " + describe(actual));
    at::Tensor expected;
    try {
      expected = tensor_from_json(expected_tree, "golden " + path, resolve_);
    } catch (const Error& e) {  // the archive's own data
      if (e.kind() != ErrorKind::BadInput) throw;
      throw bad_model(e.what());
    }
    // Archives since per-output tolerances record each float output's atol; older ones one.
    auto own = expected_tree.find("atol");
    double atol =
        own != expected_tree.end() && own->is_number() ? own->get<double>() * widen_ : atol_;
    return compare_tensors(expected, actual.toTensor(), rtol_, atol, path);
  }

  double rtol_;
  double atol_;
  double widen_;
  const NpyResolver& resolve_;
};

}  // namespace

bool GoldenCase::ok() const {
  return std::all_of(leaves.begin(), leaves.end(), [](const GoldenLeaf& leaf) { return leaf.ok; });
}

bool GoldenReport::ok() const {
  return std::all_of(cases.begin(), cases.end(), [](const GoldenCase& c) { return c.ok(); });
}

namespace {

NpyResolver resolver_for(const Archive& archive) {
  return [&archive](const std::string& name) {
    auto bytes = archive.read_extra(name);
    if (!bytes) throw bad_model(archive.path().string() + ": golden file " + name + " is missing");
    return parse_npy(*bytes, name);
  };
}

std::vector<c10::IValue> case_inputs(const Model& model, const json& golden, size_t number,
                                     const NpyResolver& resolve) {
  const json& trees = golden.at("inputs");
  const auto& arguments = model.inputs();
  std::vector<c10::IValue> inputs;
  for (size_t i = 0; i < trees.size() && i < arguments.size(); ++i) {
    try {
      inputs.push_back(from_json(
          trees[i], arguments[i].type,
          "golden case " + std::to_string(number) + " input '" + arguments[i].name + "'", resolve));
    } catch (const Error& e) {  // the archive's own data: a broken archive, not a bad request
      if (e.kind() != ErrorKind::BadInput) throw;
      throw bad_model(model.archive().path().string() + ": " + e.what());
    }
  }
  return inputs;
}

// Why an archive that loaded fails on its own golden inputs, with what may explain it.
std::string cannot_run_here(const Model& model, std::string why) {
  const Archive& archive = model.archive();
  for (const std::string prefix : {"the model rejected the input: ",
                                   "the model failed on an input that matches its manifest: "}) {
    if (why.rfind(prefix, 0) == 0) why = why.substr(prefix.size());
  }
  std::string message = "cannot run " + archive.path().string() +
                        " on this machine: it fails on its own golden inputs (" + why + ")";
  const auto& manifest = archive.manifest();
  if (manifest && manifest->precision == "bf16") {
    std::string exported = manifest->exported.torch_version;
    message += "; it is a bf16 archive" +
               (exported.empty() ? std::string() : " exported with torch " + exported) +
               ", and this libtorch (" + compat::libtorch_version() + ")" +
               (TORCHSHIP_TORCH_AT_LEAST(2, 0)
                    ? std::string(" may lack bf16 kernels for this CPU")
                    : std::string(" has bf16 convolutions only for CPUs with AVX-512"));
  } else if (model.precision() == "bf16") {
    message +=
        "; it runs in bf16 as asked at load, which this CPU's kernels cannot compute "
        "here: load it in fp32";
  }
  return message;
}

}  // namespace

c10::IValue forward_golden(const Model& model, std::vector<c10::IValue> inputs) {
  try {
    return model.forward(std::move(inputs));
  } catch (const Error& e) {
    // The archive's own inputs failing is no caller's fault: this machine cannot run it.
    if (e.kind() != ErrorKind::BadInput && e.kind() != ErrorKind::Internal) throw;
    throw unsupported(cannot_run_here(model, e.what()));
  }
}

std::vector<c10::IValue> golden_inputs(const Model& model, size_t number) {
  if (!model.archive().has_golden()) return {};
  json index = read_golden_index(model.archive());
  if (number >= index["cases"].size()) return {};
  return case_inputs(model, index["cases"][number], number, resolver_for(model.archive()));
}

GoldenReport check_golden(const Model& model) {
  const Archive& archive = model.archive();
  json index = read_golden_index(archive);
  NpyResolver resolve = resolver_for(archive);

  GoldenReport report;
  report.rtol = index["rtol"].get<double>();  // parse_golden_index filled in the defaults
  report.atol = index["atol"].get<double>();
  // bf16 chosen at load (OpenVINO) is checked at bf16's tolerance: the recorded rtol raised to
  // kBf16Rtol, each recorded atol scaled by the same factor (torchship.tolerance's rule).
  double widen =
      model.precision() == "bf16" && report.rtol < kBf16Rtol ? kBf16Rtol / report.rtol : 1.0;
  report.rtol *= widen;
  report.atol *= widen;
  Comparer comparer(report.rtol, report.atol, widen, resolve);
  for (size_t number = 0; number < index["cases"].size(); ++number) {
    const json& golden = index["cases"][number];
    GoldenCase result;
    result.label = golden.value("label", std::string());
    comparer.compare(forward_golden(model, case_inputs(model, golden, number, resolve)),
                     golden.at("output"), "output", result.leaves);
    report.cases.push_back(std::move(result));
  }
  return report;
}

}  // namespace torchship
