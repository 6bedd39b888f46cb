// The seam between torchship and the runtimes that execute a model: TorchScript's interpreter,
// AOTInductor's compiled packages and OpenVINO's runtime. Model (model.h) is a facade over one
// Backend plus the archive's manifest; everything above it (checks, preprocessing, tasks, CLI,
// server) is written once, against this interface.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "torchship/archive.h"
#include "torchship/optimization.h"
#include "torchship/signature.h"

namespace torchship::backends {

// What a forward takes and returns, in TorchScript's type vocabulary (every backend describes
// their I/O with it: tensors, lists, tuples, named tuples, dicts).
struct Signature {
  std::vector<Argument> inputs;
  size_t required_inputs = 0;  // the first ones; the rest have defaults
  c10::TypePtr output_type;
};

// What the facade gives a backend to choose an optimization by: whether a candidate reproduces
// the reference outputs, and one forward on the reference inputs to time it with.
struct CandidateProbe {
  std::function<std::string()> miss;  // "" when the model as it is now reproduces the reference
  std::function<void()> forward;      // one forward on the reference inputs
  std::string against;                // what the reference is, for notes ("the golden vectors")
  // "auto": every candidate, kept when verified and faster than the module as stored; a
  // candidate's name: that one alone, verified but not timed (a choice recorded before).
  std::string wanted = "auto";
};

// How a failed forward reads: one line, and whether it says the input's values were wrong.
struct RunFailure {
  std::string why;
  bool blames_the_values = false;
  bool out_of_memory = false;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual ModelFormat format() const = 0;
  virtual const Signature& signature() const = 0;
  virtual ModelSummary summary() const = 0;  // of the model as stored
  // Runs the model on inputs the facade has checked and moved to the model's device.
  virtual c10::IValue run(std::vector<c10::IValue> inputs) const = 0;
  virtual RunFailure explain(const std::exception& error) const = 0;
  // Replaces the model by a faster equivalent: a candidate is kept only when `probe.miss()`
  // returns "" (the facade reruns reference inputs through it and compares with the reference
  // outputs) and, unless the probe names it, when its forward is faster than the stored
  // module's. Fills `report` with what was tried and the times, appends a line to `notes`;
  // returns whether the model now runs optimized.
  virtual bool optimize(const CandidateProbe& probe, OptimizationReport& report,
                        std::vector<std::string>& notes) = 0;
  // Whether optimize() can make the model faster at all (compiled packages: no; their
  // optimize() only notes why).
  virtual bool optimizes() const = 0;
};

// A TorchScript archive (.pt) on `device`; custom-operator libraries it needs are loaded.
std::unique_ptr<Backend> open_torchscript(const Archive& archive, const c10::Device& device);

// An AOTInductor package (.pt2). In a build without AOTInductor (libtorch < 2.6) it throws
// Error(Unsupported) saying why.
std::unique_ptr<Backend> open_aoti(const Archive& archive, const c10::Device& device,
                                   int concurrent_forwards);

// How an engine that compiles at load is set up: its precision ("fp32" or "bf16"), the threads
// of each forward, and how many forwards run at once (each gets a stream of its own).
struct EngineSettings {
  std::string precision = "fp32";
  int threads = 1;
  int concurrent_forwards = 1;
};

// An OpenVINO archive, its IR compiled for this CPU. In a build without OpenVINO it throws
// Error(Unsupported) saying how to get one.
std::unique_ptr<Backend> open_openvino(const Archive& archive, const c10::Device& device,
                                       const EngineSettings& settings);

// Whether a failure's text says memory ran out (CPU or device allocators' words).
bool says_out_of_memory(const std::string& text);

// A failed forward explained by `why` alone (a compiled form cannot tell whether the values or
// the shapes were to blame).
RunFailure failure_because(std::string why);

// optimize() of a form compiled before it runs (AOTInductor, OpenVINO): the model stays as
// compiled, and the note says how it was compiled, then "; <static_lead> 1, 8" for the batch
// sizes also compiled with a fixed batch. Returns false: nothing was optimized.
bool keep_as_compiled(std::string note, const std::string& static_lead,
                      const std::vector<int64_t>& static_batches, OptimizationReport& report,
                      std::vector<std::string>& notes);

}  // namespace torchship::backends
