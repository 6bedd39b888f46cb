#include "backends/package_worker.h"

#include "torchship/error.h"

#ifdef _WIN32

namespace torchship::backends {

std::unique_ptr<CompiledPackage> open_package_in_worker(const Archive&, const c10::Device&, int) {
  throw unsupported("package workers run on Linux and other POSIX systems, not Windows");
}

}  // namespace torchship::backends

#else

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "backends/worker_channel.h"
#include "platform/runtime_defaults.h"

extern char** environ;

namespace torchship::backends {

namespace {

// The largest answer torchship takes from a worker: its outputs, whatever the model.
constexpr uint64_t kMaxAnswerBytes = uint64_t(1) << 40;

std::string system_error(const std::string& what, int error) {
  return what + ": " + std::strerror(error);
}

// The worker process and the channels to it; ends it (and reaps it) when destroyed.
class WorkerProcess {
 public:
  WorkerProcess(const std::string& program, int channels, const c10::Device& device) {
    if (program.empty()) {
      throw internal_error(
          "package workers are on, but no program to run them is set "
          "(RuntimeOptions::package_worker_program)");
    }
    std::vector<int> child_ends;  // closed here once the worker has them, or failed to start
    try {
      for (int i = 0; i < channels; ++i) child_ends.push_back(open_channel(channels));
      start(program, child_ends, device);
    } catch (...) {
      for (int fd : child_ends) ::close(fd);
      throw;
    }
    for (int fd : child_ends) ::close(fd);
  }

  ~WorkerProcess() {
    for (auto& channel : channels_) channel->shut_down();
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);  // nothing in it to save, and what it mapped goes at once
      ::waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }
  std::vector<std::unique_ptr<WorkerChannel> >& channels() { return channels_; }

  // How the process ended, once a channel reads its end: "exited with code 1", "killed by
  // signal 9". Waits for it to end (it has: it closes its channels only by ending).
  std::string how_it_ended() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!reaped_) {
      int status = 0;
      pid_t waited = -1;
      while ((waited = ::waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
      }
      reaped_ = true;
      ended_ = waited != pid_        ? "ended (the application collected its status)"
               : WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                     : "exited with code " + std::to_string(WEXITSTATUS(status));
    }
    return ended_;
  }

 private:
  // A socket pair: this end a channel, the worker's end returned, numbered above those the
  // worker's are moved to (3 to 3 + channels - 1), so that moving one overwrites no other.
  int open_channel(int channels) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
      throw internal_error(system_error("cannot open a channel to a package worker", errno));
    }
    channels_.push_back(std::make_unique<WorkerChannel>(pair[0]));
    int high = ::fcntl(pair[1], F_DUPFD_CLOEXEC, 3 + channels);
    ::close(pair[1]);
    if (high < 0) throw internal_error(system_error("cannot open a channel", errno));
    return high;
  }

  void start(const std::string& program, const std::vector<int>& child_ends,
             const c10::Device& device) {
    int channels = static_cast<int>(child_ends.size());
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    for (int i = 0; i < channels; ++i) {
      posix_spawn_file_actions_adddup2(&actions, child_ends[i], 3 + i);
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
    // Nothing else of this process's (a server's listening socket) goes to the worker.
    posix_spawn_file_actions_addclosefrom_np(&actions, 3 + channels);
#endif
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attributes, &none);  // a server's threads block signals
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
    // (named as what it runs, not /proc/self/exe, in ps and top)
    std::error_code ec;
    std::string name = program == "/proc/self/exe"
                           ? std::filesystem::read_symlink(program, ec).filename().string()
                           : program;
    std::vector<std::string> words = {name.empty() ? program : name, "package-worker",
                                      std::to_string(channels), device.str(),
                                      std::to_string(at::get_num_threads())};
    std::vector<char*> argv;
    for (auto& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);
    int result = ::posix_spawn(&pid_, program.c_str(), &actions, &attributes, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    if (result != 0) {
      pid_ = -1;
      throw internal_error(system_error("cannot start the package worker " + program, result));
    }
  }

  pid_t pid_ = -1;
  std::vector<std::unique_ptr<WorkerChannel> > channels_;
  std::mutex mutex_;
  bool reaped_ = false;
  std::string ended_;
};

// What a Failure frame says, thrown as in the worker: a torchship Error as itself, anything
// else (the compiled code's own failures) as text for the backend to explain.
[[noreturn]] void throw_failure(const std::string& payload) {
  auto failure = nlohmann::json::parse(payload, nullptr, false);
  std::string message = "the package worker failed, and its failure does not read";
  int kind = static_cast<int>(ErrorKind::Internal);
  if (failure.is_object() && failure.value("message", nlohmann::json()).is_string()) {
    message = failure["message"].get<std::string>();
    kind = failure.value("kind", nlohmann::json()).is_number_integer() ? failure["kind"].get<int>()
                                                                       : -1;
  }
  if (kind >= 0 && kind <= static_cast<int>(ErrorKind::Internal)) {
    throw Error(static_cast<ErrorKind>(kind), message);
  }
  throw std::runtime_error(message);
}

// The Archive frame: the name's size, the name, the archive's bytes, read straight into it (a
// package may be hundreds of MB: one copy, not three).
std::string archive_payload(const Archive& archive) {
  std::string name = archive.path().string();
  std::error_code ec;
  auto size = std::filesystem::file_size(archive.file(), ec);
  auto name_size = static_cast<uint32_t>(name.size());
  std::string payload(reinterpret_cast<const char*>(&name_size), sizeof(name_size));
  payload += name;
  size_t start = payload.size();
  std::ifstream file(archive.file(), std::ios::binary);
  if (!ec) {
    payload.resize(start + size);
    file.read(payload.data() + start, static_cast<std::streamsize>(size));
  }
  if (ec || !file) throw bad_model("cannot read " + name + " to send it to its package worker");
  return payload;
}

// What a Ready frame says about the package.
struct ReadyPackage {
  CallSpec spec;
  ModelSummary summary;
};

// A worker that ended: how, in words, for the request that found out, and whether that request
// reached it (one that did not may run in the worker that takes its place).
struct WorkerEnded {
  std::string how;
  bool delivered = true;
};

// One worker process with the package loaded, and its channels, each used by one forward at a
// time.
class Worker {
 public:
  Worker(const Archive& archive, const c10::Device& device, int channels)
      : process_(package_worker_program(), channels, device), name_(archive.path().string()) {
    WorkerChannel& first = *process_.channels().front();
    Frame frame;
    try {
      first.send(FrameKind::Archive, archive_payload(archive));
      frame = first.receive(kMaxAnswerBytes);
    } catch (const ChannelClosed&) {
      throw internal_error("cannot load " + name_ + ": its package worker (process " +
                           std::to_string(process_.pid()) + ") " + process_.how_it_ended() +
                           " while loading it");
    }
    if (frame.kind == FrameKind::Failure) throw_failure(frame.payload);
    try {
      auto ready = nlohmann::json::parse(frame.payload);
      ready_.spec = {ready.at("inputs").get<std::string>(), ready.at("outputs").get<std::string>()};
      ready_.summary.methods = {"forward"};
      ready_.summary.parameter_count = ready.value("parameter_count", int64_t(0));
      ready_.summary.parameter_bytes = ready.value("parameter_bytes", int64_t(0));
    } catch (const std::exception& e) {
      throw internal_error("cannot load " + name_ + ": its package worker answered what " +
                           "torchship cannot read (" + first_line(e) + ")");
    }
    for (auto& channel : process_.channels()) idle_.push_back(channel.get());
  }

  const ReadyPackage& ready() const { return ready_; }
  pid_t pid() const { return process_.pid(); }

  // Throws WorkerEnded when the process is gone.
  std::vector<at::Tensor> run(const std::string& request) {
    Frame answer;
    {
      IdleChannel channel(*this);
      bool delivered = false;
      try {
        channel->send(FrameKind::Run, request);
        delivered = true;
        answer = channel->receive(kMaxAnswerBytes);
      } catch (const ChannelClosed&) {
        throw WorkerEnded{"the package worker of " + name_ + " (process " +
                              std::to_string(process_.pid()) + ") " + process_.how_it_ended(),
                          delivered};
      } catch (const std::exception& e) {
        // Part of a frame may be left in the channel: no later request may read it. Closing it
        // ends the worker, and the next request starts another.
        channel->shut_down();
        throw internal_error("the package worker of " + name_ + " answered what torchship " +
                             "cannot read (" + first_line(e) + "); it is ended");
      }
    }
    if (answer.kind == FrameKind::Failure) throw_failure(answer.payload);
    try {
      int ignored = 0;
      return decode_tensors(answer.payload, ignored);
    } catch (const std::exception& e) {
      throw internal_error("the package worker of " + name_ + " answered what torchship " +
                           "cannot read: " + first_line(e));
    }
  }

 private:
  // A channel no other forward uses, for as long as it lives.
  class IdleChannel {
   public:
    explicit IdleChannel(Worker& worker) : worker_(worker) {
      std::unique_lock<std::mutex> lock(worker_.mutex_);
      worker_.freed_.wait(lock, [&] { return !worker_.idle_.empty(); });
      channel_ = worker_.idle_.back();
      worker_.idle_.pop_back();
    }
    ~IdleChannel() {
      {
        std::lock_guard<std::mutex> lock(worker_.mutex_);
        worker_.idle_.push_back(channel_);
      }
      worker_.freed_.notify_one();
    }
    WorkerChannel* operator->() const { return channel_; }

   private:
    Worker& worker_;
    WorkerChannel* channel_ = nullptr;
  };

  WorkerProcess process_;
  std::string name_;
  ReadyPackage ready_;
  std::mutex mutex_;
  std::condition_variable freed_;
  std::vector<WorkerChannel*> idle_;
};

// The package in a worker, and a new worker in its place when one ends: a request it was running
// fails, one that had not reached it runs in the new worker, as do the next ones. The archive is
// kept for that (an open file, or the in-memory copy of an archive from bytes).
class RemotePackage final : public CompiledPackage {
 public:
  RemotePackage(const Archive& archive, const c10::Device& device, int concurrent_forwards)
      : archive_(archive),
        device_(device),
        channels_(std::max(1, concurrent_forwards)),
        worker_(std::make_shared<Worker>(archive_, device_, channels_)),
        ready_(worker_->ready()) {}

  const CallSpec& call_spec() const override { return ready_.spec; }
  ModelSummary summary() const override { return ready_.summary; }
  std::string where() const override {
    return " (in package worker process " + std::to_string(current()->pid()) + ")";
  }

  std::vector<at::Tensor> run(int model, std::vector<at::Tensor> inputs) const override {
    std::string request = encode_tensors(model, inputs);
    inputs.clear();
    std::shared_ptr<Worker> worker = current();
    for (int attempt = 0;; ++attempt) {
      try {
        return worker->run(request);
      } catch (const WorkerEnded& ended) {
        std::string outcome = replace(worker);
        std::shared_ptr<Worker> next = current();
        // A request that never reached the worker that ended runs, once, in the one in its place.
        if (ended.delivered || next == worker || attempt > 0) {
          throw internal_error(ended.how + outcome);
        }
        worker = std::move(next);
      }
    }
  }

 private:
  std::shared_ptr<Worker> current() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return worker_;
  }

  // Starts a worker in place of `ended` unless another request did; says what came of it.
  std::string replace(const std::shared_ptr<Worker>& ended) const {
    std::lock_guard<std::mutex> lock(replacing_);
    if (current() != ended) return "; a new worker serves the next requests";
    try {
      auto worker = std::make_shared<Worker>(archive_, device_, channels_);
      std::lock_guard<std::mutex> lock(mutex_);
      worker_ = std::move(worker);
      return "; a new worker serves the next requests";
    } catch (const std::exception& e) {
      return "; starting another failed: " + first_line(e);
    }
  }

  Archive archive_;
  c10::Device device_;
  int channels_;
  mutable std::mutex replacing_;  // one replacement at a time
  mutable std::mutex mutex_;      // guards worker_
  mutable std::shared_ptr<Worker> worker_;
  ReadyPackage ready_;  // the first worker's: every one loads the same package
};

}  // namespace

std::unique_ptr<CompiledPackage> open_package_in_worker(const Archive& archive,
                                                        const c10::Device& device,
                                                        int concurrent_forwards) {
  return std::make_unique<RemotePackage>(archive, device, concurrent_forwards);
}

}  // namespace torchship::backends

#endif
