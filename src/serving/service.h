// What the protocol fronts (HTTP, gRPC) share: the repository and its batchers, limits,
// deadlines, the API key, metrics, and what every failure is called and answered with. A front
// only translates its protocol to these calls, so both behave the same for the same request.
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "serving/decode_slots.h"
#include "serving/inference.h"
#include "serving/metrics.h"
#include "serving/model_metadata.h"
#include "serving/repository.h"
#include "serving/server_options.h"
#include "serving/status.h"

namespace torchship::serving {

using Clock = std::chrono::steady_clock;

// The server log: one write per record, so that records of concurrent requests never interleave.
void log_line(const std::string& text);

class InferenceService {
 public:
  explicit InferenceService(ServerOptions options);

  const ServerOptions& options() const { return options_; }
  Metrics& metrics() { return metrics_; }
  Repository& repository() { return *repository_; }

  bool ready() const { return !draining_.load(); }
  void drain() { draining_ = true; }

  // Whether an Authorization value ("Bearer <key>") opens the protected routes.
  bool authorized(const std::string& authorization) const;

  // The ready version; ServingError(NotFound) naming what there is otherwise.
  std::shared_ptr<ModelVersion> find(const std::string& name, const std::string& version) const;

  // When a request that arrived at `started` must be answered: --request-timeout-ms, or the
  // client's own deadline (gRPC) when that comes first; the client then hears DEADLINE_EXCEEDED
  // from its own library.
  Clock::time_point deadline_from(Clock::time_point started, Clock::time_point client_deadline =
                                                                 Clock::time_point::max()) const;
  [[noreturn]] void deadline_passed(const std::string& what) const;

  // While a request is decoded (JSON parsed, tensors built, images decoded): a decode slot,
  // waited for no longer than the deadline, and a decode that may have taken much scratch memory
  // (`large`: a large body, an image) gives it back to the system when it ends, thrown or not.
  class Decoding {
   public:
    Decoding(DecodeSlots::Held slot, bool large) : slot_(std::move(slot)), large_(large) {}
    Decoding(Decoding&&) = default;
    ~Decoding();

   private:
    DecodeSlots::Held slot_;
    bool large_;
  };
  Decoding begin_decode(Clock::time_point deadline, bool large);

  // Runs one request through the version's batcher and waits for its rows until its deadline; a
  // forward still running then finishes for nobody, and the queue moves on.
  c10::IValue execute(ModelVersion& entry, std::vector<c10::IValue> arguments,
                      Clock::time_point deadline);

  // A KServe inference request's outputs, in the order they are to be answered (the requested
  // ones, else all); each with whether it goes as binary data.
  std::vector<std::pair<NamedTensor, bool>> infer(ModelVersion& entry, InferRequest& request,
                                                  Clock::time_point deadline);

  // The metadata of a ready version (the highest for version ""): its versions are all the
  // ready ones when none was named, else that one. ServingError(NotFound) as find().
  ModelMetadata model_metadata(const std::string& name, const std::string& version) const;

  // An encoded image (PNG, JPEG, ...) as a request carries it.
  struct EncodedImage {
    std::string_view bytes;  // as they came
    // For a compressed body: the bytes inflated (within the body limit); null when `bytes` is
    // the image. It runs within the decode slot, as decoding does.
    std::function<std::string(std::string_view)> inflate;
    std::string origin;  // names the image in messages: "the request body"
  };

  // The top `k` classes of one image by a version whose manifest task is classification:
  // decoded and resized per its manifest, run through its batcher.
  std::vector<Prediction> classify(ModelVersion& entry, int k, const EncodedImage& image,
                                   Clock::time_point deadline);

  // The objects with a score of at least min_score in one image, by a version whose manifest
  // task is detection, in the image's pixels: decoded, prepared per its manifest, batched.
  std::vector<Detection> detect(ModelVersion& entry, double min_score, const EncodedImage& image,
                                Clock::time_point deadline);

  // A load (or unload) request of the repository extension, with the names of its parameters:
  // none are accepted for a load, `unload_dependents` for an unload (no ensembles here).
  void control(const std::string& name, bool load, const std::vector<std::string>& parameters);

  // A failed request's outcome: its status and one printable line. Failures that are not the
  // client's fault get a brief message; their full text goes to the server log under `route`.
  Outcome outcome_of(std::exception_ptr failure, const std::string& route) const;

  // The server metadata: name, version, protocol extensions.
  std::vector<std::string> extensions() const;

 private:
  // `prepare` run on the image's bytes (inflated when compressed) within a decode slot.
  c10::IValue decoded(const EncodedImage& image, Clock::time_point deadline,
                      const std::function<c10::IValue(std::string_view)>& prepare);

  ServerOptions options_;
  Metrics metrics_;
  std::unique_ptr<Repository> repository_;
  std::atomic<bool> draining_{false};
  DecodeSlots decode_slots_;
};

}  // namespace torchship::serving
