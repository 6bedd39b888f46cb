#include "serving/service.h"

#include <cstdio>

#include "core/text.h"
#include "torchship/error.h"
#include "torchship/image.h"
#include "torchship/memory.h"

namespace torchship::serving {

void log_line(const std::string& text) {
  std::string line = "torchship: " + text + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

InferenceService::InferenceService(ServerOptions options)
    : options_(std::move(options)), decode_slots_(options_.max_concurrent_decodes) {
  RepositoryOptions repository;
  repository.load = options_.load;
  repository.threads_per_instance = options_.threads_per_instance;
  repository.control = options_.model_control;
  repository.startup_models = options_.load_models;
  repository_ = std::make_unique<Repository>(options_.model_repository, repository, metrics_,
                                             [](const std::string& text) { log_line(text); });
}

bool InferenceService::authorized(const std::string& authorization) const {
  return options_.api_key.empty() || authorization == "Bearer " + options_.api_key;
}

std::shared_ptr<ModelVersion> InferenceService::find(const std::string& name,
                                                     const std::string& version) const {
  if (auto found = repository_->find(name, version)) return found;
  auto not_loaded = [&] {
    return ServingError(Status::NotFound,
                        "model '" + name + "' is not loaded (" +
                            (repository_->control() == ModelControl::Explicit
                                 ? "POST /v2/repository/models/" + name + "/load loads it)"
                                 : "GET /v2/repository/index says why)"));
  };
  if (!repository_->has_model(name)) {
    if (!repository_->holds(name))
      throw ServingError(Status::NotFound, "unknown model '" + name + "'");
    throw not_loaded();
  }
  if (version.empty()) {
    // The model was loaded (or unloaded) between the two looks: ask once more, and otherwise
    // answer as for a model not loaded, never "no version " with an empty name.
    if (auto found = repository_->find(name, version)) return found;
    throw not_loaded();
  }
  throw ServingError(Status::NotFound, "model '" + name + "' has no version " + version +
                                           " (it has " + join(repository_->versions_of(name)) +
                                           ")");
}

Clock::time_point InferenceService::deadline_from(Clock::time_point started,
                                                  Clock::time_point client_deadline) const {
  Clock::time_point own = options_.request_timeout_ms <= 0
                              ? Clock::time_point::max()
                              : started + std::chrono::milliseconds(options_.request_timeout_ms);
  return std::min(own, client_deadline);
}

void InferenceService::deadline_passed(const std::string& what) const {
  throw ServingError(Status::DeadlineExceeded, what + " within the request deadline of " +
                                                   std::to_string(options_.request_timeout_ms) +
                                                   " ms (--request-timeout-ms)");
}

InferenceService::Decoding::~Decoding() {
  if (large_) release_free_memory();
}

InferenceService::Decoding InferenceService::begin_decode(Clock::time_point deadline, bool large) {
  DecodeSlots::Held slot = decode_slots_.acquire(deadline);
  if (!slot) deadline_passed("no decode slot came free");
  return Decoding(std::move(slot), large);
}

c10::IValue InferenceService::execute(ModelVersion& entry, std::vector<c10::IValue> arguments,
                                      Clock::time_point deadline) {
  if (Clock::now() >= deadline) deadline_passed("the request was not decoded");
  try {
    auto result = entry.batcher->submit(std::move(arguments), deadline);
    if (deadline != Clock::time_point::max() &&
        result.wait_until(deadline) == std::future_status::timeout) {
      deadline_passed("model '" + entry.name + "' did not answer");
    }
    return result.get();
  } catch (const DeadlineExceeded& e) {
    deadline_passed(std::string(e.what()) + ": model '" + entry.name + "' did not start it");
  }
}

std::vector<std::pair<NamedTensor, bool>> InferenceService::infer(ModelVersion& entry,
                                                                  InferRequest& request,
                                                                  Clock::time_point deadline) {
  std::vector<c10::IValue> arguments = forward_arguments(*entry.model, std::move(request.inputs));
  c10::IValue output = execute(entry, std::move(arguments), deadline);
  const auto& manifest = entry.model->manifest();
  return chosen_outputs(request, named_outputs(output, manifest ? &*manifest : nullptr));
}

ModelMetadata InferenceService::model_metadata(const std::string& name,
                                               const std::string& version) const {
  std::shared_ptr<ModelVersion> entry = find(name, version);
  std::vector<std::string> versions =
      version.empty() ? repository_->versions_of(entry->name) : std::vector<std::string>{version};
  return serving::model_metadata(entry->name, versions, *entry->model);
}

namespace {

// Refuses an image route for a model of another task, and an empty upload.
void check_image_request(const ModelVersion& entry, const std::string& task, const char* noun,
                         const InferenceService::EncodedImage& image) {
  const auto& manifest = entry.model->manifest();
  if (!manifest || manifest->task != task) {
    throw bad_input("model '" + entry.name + "' is not a " + noun + " (its manifest task is " +
                    (manifest ? manifest->task : std::string("missing")) + "); use /infer");
  }
  if (image.bytes.empty()) {
    throw bad_input("expected the image file as " + image.origin +
                    " (PNG, JPEG, ...), got 0 bytes");
  }
}

}  // namespace

c10::IValue InferenceService::decoded(const EncodedImage& image, Clock::time_point deadline,
                                      const std::function<c10::IValue(std::string_view)>& prepare) {
  // A small file may decode to hundreds of megabytes: that memory goes back to the system when
  // the decode ends, after the inflated bytes (declared within) are freed.
  Decoding decoding = begin_decode(deadline, /*large=*/true);
  std::string inflated;
  std::string_view bytes = image.bytes;
  if (image.inflate) bytes = inflated = image.inflate(image.bytes);
  return prepare(bytes);
}

std::vector<Prediction> InferenceService::classify(ModelVersion& entry, int k,
                                                   const EncodedImage& image,
                                                   Clock::time_point deadline) {
  check_image_request(entry, "classification", "classifier", image);
  c10::IValue input = decoded(image, deadline, [&](std::string_view bytes) {
    return entry.model->image_input_from_bytes(bytes, 0, image.origin);
  });
  c10::IValue output = execute(entry, {input}, deadline);
  return entry.model->top_k_rows(output, k).at(0);
}

std::vector<Detection> InferenceService::detect(ModelVersion& entry, double min_score,
                                                const EncodedImage& image,
                                                Clock::time_point deadline) {
  check_image_request(entry, "detection", "detector", image);
  int64_t height = 0, width = 0;
  c10::IValue input = decoded(image, deadline, [&](std::string_view bytes) {
    // Decoded at full size first: the boxes are mapped back to it.
    at::Tensor rgb = decode_image_bytes(bytes, ImageSpec{}, image.origin);
    height = rgb.size(0);
    width = rgb.size(1);
    return entry.model->detector_input(rgb);
  });
  c10::IValue output = execute(entry, {input}, deadline);
  return entry.model->detections(output, height, width, min_score);
}

void InferenceService::control(const std::string& name, bool load,
                               const std::vector<std::string>& parameters) {
  for (const auto& key : parameters) {
    if (!load && key == "unload_dependents") continue;  // no ensembles: nothing depends
    throw bad_input("parameter '" + key + "' is not supported (torchship " +
                    (load ? "loads models as the repository holds them" : "unloads models") +
                    "; accepted: " + (load ? "none" : "unload_dependents") + ")");
  }
  if (load) {
    repository_->load(name);
  } else {
    repository_->unload(name);
  }
}

Outcome InferenceService::outcome_of(std::exception_ptr failure, const std::string& route) const {
  std::string full, brief;
  try {
    std::rethrow_exception(failure);
  } catch (const ServingError& e) {
    return {e.status, printable(e.what())};  // URLs and names may carry any byte
  } catch (const Error& e) {
    Status status = status_of(e.kind());
    if (status == Status::Internal || status == Status::Unimplemented) {
      log_line("error: " + route + ": " + e.what());
    }
    return {status, e.what()};
  } catch (const std::bad_alloc&) {
    full = brief = "out of memory";
  } catch (const std::exception& e) {  // c10::Error's brief leaves out its backtrace
    full = e.what();
    brief = first_line(e);
  } catch (...) {
    full = brief = "unknown failure";
  }
  // Not the client's fault: one printable line for it, without the library's stack trace or
  // source locations; the full text for the server log.
  log_line("error: " + route + ": internal error: " + printable(full, full.size()));
  return {Status::Internal, "internal error: " + printable(brief, 512)};
}

std::vector<std::string> InferenceService::extensions() const {
  return {"binary_tensor_data", "classify", "detect", "model_repository"};
}

}  // namespace torchship::serving
