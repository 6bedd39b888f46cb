// How a torch.export program is called: forward's arguments flattened into the flat list of
// tensors a compiled form runs on, and its flat outputs rebuilt into forward's structure, by the
// program's call spec (torch.utils._pytree's specs of (args, kwargs) and of the result). The
// AOTInductor and OpenVINO backends run such programs and share this.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/tree_spec.h"

namespace torchship::backends {

class ExportedCall {
 public:
  // `in_spec` and `out_spec` as treespec_dumps writes them; argument names come from the
  // manifest (else input_0, input_1, ...). Throws Error(BadModel) naming `path` for a spec
  // torchship cannot rebuild.
  ExportedCall(const std::string& in_spec, const std::string& out_spec,
               const std::optional<Manifest>& manifest, const std::string& path);

  const Signature& signature() const { return signature_; }
  // The program's flat tensor inputs, contiguous (compiled code indexes them with the strides
  // torch.export saw). An argument torch.export compiled in as a constant takes no tensor; a
  // value other than the one it was compiled with is Error(BadInput).
  std::vector<at::Tensor> flatten(const std::vector<c10::IValue>& inputs) const;
  // forward's result from the program's flat outputs; Error(BadModel) when their count differs.
  c10::IValue unflatten(const std::vector<at::Tensor>& outputs) const;
  size_t output_count() const { return outputs_.leaf_count(); }
  // Where forward's argument `argument` comes in the flat list: its first tensor's position.
  size_t flat_position(size_t argument) const;

 private:
  void check_constant(size_t index, const c10::IValue& value) const;

  TreeSpec inputs_, outputs_;
  Signature signature_;
  std::vector<std::string> input_places_;  // "input 'x'": messages name the argument
  std::vector<std::string> constants_;     // per argument: a compiled-in value as JSON, or ""
};

// Whether a request's inputs have exactly the batch size a static model was compiled for, in
// each argument the model fixes (export.static_batches).
bool takes_static_batch(const StaticBatchModel& model, const std::vector<c10::IValue>& inputs);

// The position in `models` (the manifest's export.static_batches) of the first that takes these
// inputs, or -1: the dynamic model.
int static_model_for(const std::vector<StaticBatchModel>& models,
                     const std::vector<c10::IValue>& inputs);

}  // namespace torchship::backends
