#include "torchship/golden.h"

#include <cmath>

#include <ATen/ATen.h>

#include "torch_compat.h"
#include "torchship/error.h"
#include "torchship/limits.h"
#include "torchship/tensor_io.h"
#include "torchship/value_tree.h"

namespace torchship {
namespace {

using nlohmann::json;

class Comparer {
 public:
  Comparer(double rtol, double atol, const NpyResolver& resolve)
      : rtol_(rtol), atol_(atol), resolve_(resolve) {}

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
    double atol = own != expected_tree.end() && own->is_number() ? own->get<double>() : atol_;
    return compare_tensors(expected, actual.toTensor(), rtol_, atol, path);
  }

  double rtol_;
  double atol_;
  const NpyResolver& resolve_;
};

}  // namespace

double scaled_atol(const at::Tensor& expected, double rtol) {
  double largest = 0;
  if (expected.is_floating_point() && expected.numel() > 0) {
    largest = at::nan_to_num(expected.to(at::kDouble).abs(), 0, 0, 0).max().item<double>();
  }
  return rtol * std::max(1.0, largest);
}

GoldenLeaf compare_tensors(const at::Tensor& expected, const at::Tensor& actual, double rtol,
                           std::optional<double> atol, const std::string& path) {
  at::Tensor got = actual.to(at::kCPU);
  GoldenLeaf leaf{path, 0, 0, 0, true, ""};
  if (got.sizes() != expected.sizes() || got.scalar_type() != expected.scalar_type()) {
    leaf.ok = false;
    leaf.problem = "expected " + describe(expected) + ", got " + describe(got);
    return leaf;
  }
  if (got.numel() == 0) return leaf;
  if (!expected.is_floating_point()) {
    leaf.ok = at::equal(got, expected);
    leaf.max_abs = (got.to(at::kDouble) - expected.to(at::kDouble)).abs().max().item<double>();
    if (!leaf.ok) leaf.problem = "values differ";
    return leaf;
  }
  leaf.atol = atol.value_or(scaled_atol(expected, rtol));
  at::Tensor a = got.to(at::kDouble);
  at::Tensor b = expected.to(at::kDouble);
  at::Tensor diff = (a - b).abs();
  at::Tensor same = a.eq(b) | (a.isnan() & b.isnan());  // equal infinities, NaN for NaN
  diff = at::where(same, at::zeros_like(diff), diff);
  leaf.max_abs = diff.max().item<double>();
  leaf.max_rel = (diff / b.abs().clamp_min(1e-12)).max().item<double>();
  leaf.ok = (diff <= leaf.atol + rtol * b.abs()).all().item<bool>();
  if (!leaf.ok) leaf.problem = "values differ beyond tolerance";
  return leaf;
}

bool GoldenCase::ok() const {
  return std::all_of(leaves.begin(), leaves.end(), [](const GoldenLeaf& leaf) { return leaf.ok; });
}

bool GoldenReport::ok() const {
  return std::all_of(cases.begin(), cases.end(), [](const GoldenCase& c) { return c.ok(); });
}

namespace {

json read_index(const Archive& archive) {
  auto index_text = archive.read_extra(kGoldenIndexFile);
  if (!index_text) {
    throw bad_input(archive.path().string() +
                    " has no golden vectors (export it with torchship.export to record them)");
  }
  return parse_golden_index(*index_text, archive.path().string()).tree;
}

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
std::string cannot_run_here(const Archive& archive, std::string why) {
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
  }
  return message;
}

}  // namespace

GoldenIndex parse_golden_index(const std::string& text, const std::string& origin) {
  auto reject = [&](const std::string& why) -> Error {
    return bad_model(origin + ": the golden index " + why);
  };
  json index = parse_json(text, origin + ": the golden index");
  if (index.is_discarded()) throw reject("is not valid JSON");
  if (!index.is_object() || !index.contains("cases") || !index["cases"].is_array()) {
    throw reject("has no \"cases\" list");
  }
  for (const char* key : {"rtol", "atol"}) {
    auto it = index.find(key);
    if (it == index.end()) {
      index[key] = 1e-4;  // archives from before tolerances were recorded
    } else if (!it->is_number() || !(it->get<double>() >= 0) || !std::isfinite(it->get<double>())) {
      throw reject(std::string("has \"") + key + "\": " + it->dump() +
                   ", expected a non-negative number");
    }
  }
  const json& cases = index["cases"];
  for (size_t i = 0; i < cases.size(); ++i) {
    const json& golden = cases[i];
    std::string where = "case " + std::to_string(i);
    if (!golden.is_object()) throw reject(where + " is not an object");
    if (!golden.contains("inputs") || !golden["inputs"].is_array()) {
      throw reject(where + " has no \"inputs\" list");
    }
    if (!golden.contains("output")) throw reject(where + " has no \"output\"");
  }
  return {index["rtol"].get<double>(), index["atol"].get<double>(), std::move(index)};
}

c10::IValue forward_golden(const Model& model, std::vector<c10::IValue> inputs) {
  try {
    return model.forward(std::move(inputs));
  } catch (const Error& e) {
    // The archive's own inputs failing is no caller's fault: this machine cannot run it.
    if (e.kind() != ErrorKind::BadInput && e.kind() != ErrorKind::Internal) throw;
    throw unsupported(cannot_run_here(model.archive(), e.what()));
  }
}

std::string first_difference(const c10::IValue& expected, const c10::IValue& actual, double rtol,
                             const Manifest* manifest) {
  auto want = output_leaves(expected, manifest);
  auto got = output_leaves(actual, manifest);
  if (want.size() != got.size()) {
    return "output: " + std::to_string(got.size()) + " leaves, expected " +
           std::to_string(want.size());
  }
  for (size_t i = 0; i < want.size(); ++i) {
    const c10::IValue& a = want[i].value;
    const c10::IValue& b = got[i].value;
    if (want[i].path != got[i].path)
      return "output: leaf " + got[i].path + ", expected " + want[i].path;
    if (a.isTensor() && b.isTensor()) {
      GoldenLeaf leaf =
          compare_tensors(a.toTensor(), b.toTensor(), rtol, std::nullopt, want[i].path);
      if (!leaf.ok)
        return leaf.path + ": " + leaf.problem + ", max abs error " + c10::str(leaf.max_abs);
    } else if (a.tagKind() != b.tagKind() || c10::str(a) != c10::str(b)) {
      return want[i].path + ": " + c10::str(b) + ", expected " + c10::str(a);
    }
  }
  return "";
}

std::vector<c10::IValue> golden_inputs(const Model& model, size_t number) {
  if (!model.archive().has_golden()) return {};
  json index = read_index(model.archive());
  if (number >= index["cases"].size()) return {};
  return case_inputs(model, index["cases"][number], number, resolver_for(model.archive()));
}

GoldenReport check_golden(const Model& model) {
  const Archive& archive = model.archive();
  json index = read_index(archive);
  NpyResolver resolve = resolver_for(archive);

  GoldenReport report;
  report.rtol = index["rtol"].get<double>();  // parse_golden_index filled in the defaults
  report.atol = index["atol"].get<double>();
  Comparer comparer(report.rtol, report.atol, resolve);
  for (size_t number = 0; number < index["cases"].size(); ++number) {
    const json& golden = index["cases"][number];
    GoldenCase result;
    comparer.compare(forward_golden(model, case_inputs(model, golden, number, resolve)),
                     golden.at("output"), "output", result.leaves);
    report.cases.push_back(std::move(result));
  }
  return report;
}

std::optional<double> golden_rtol(const Archive& archive) {
  if (!archive.has_golden()) return std::nullopt;
  return read_index(archive)["rtol"].get<double>();
}

}  // namespace torchship
