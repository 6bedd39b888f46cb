// The channel between torchship and a package worker process (backends/worker_channel.h): frames
// and tensors across a socket, what a closed or malformed one gives, and the option's words.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <sys/socket.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include "backends/package_worker.h"
#include "backends/worker_channel.h"
#include "fixtures.h"
#include "torchship/runtime.h"

namespace torchship::backends {
namespace {

using testing::error_message;
using testing::fixture;

struct ChannelPair {
  ChannelPair() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    ours = std::make_unique<WorkerChannel>(fds[0]);
    theirs = std::make_unique<WorkerChannel>(fds[1]);
  }
  std::unique_ptr<WorkerChannel> ours, theirs;
};

TEST(WorkerChannel, TensorsOfEveryKindCrossAsTheyWere) {
  std::vector<at::Tensor> tensors = {
      at::rand({2, 3, 4}),
      at::arange(12, at::kLong).reshape({3, 4}).t(),  // not contiguous: sent as values
      at::rand({5}) > 0.5,
      at::empty({0, 5}, at::kHalf),
      at::scalar_tensor(7.5, at::kDouble),
  };
  ChannelPair pair;
  // (a frame larger than a socket's buffer: the sender must not wait for the receiver)
  std::thread sender([&] {
    pair.ours->send(FrameKind::Run, encode_tensors(2, tensors));
    pair.ours->send(FrameKind::Run, encode_tensors(-1, {at::ones({1 << 20})}));
  });
  Frame frame = pair.theirs->receive(1 << 30);
  Frame large = pair.theirs->receive(1 << 30);
  sender.join();
  EXPECT_EQ(frame.kind, FrameKind::Run);
  int model = 0;
  auto received = decode_tensors(frame.payload, model);
  EXPECT_EQ(model, 2);
  ASSERT_EQ(received.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(received[i].scalar_type(), tensors[i].scalar_type()) << i;
    EXPECT_EQ(received[i].sizes(), tensors[i].sizes()) << i;
    EXPECT_TRUE(at::equal(received[i], tensors[i])) << i;
  }
  EXPECT_EQ(decode_tensors(large.payload, model)[0].sum().item<double>(), 1 << 20);
  EXPECT_EQ(model, -1);
}

TEST(WorkerChannel, AClosedEndIsChannelClosedNotASignal) {
  ChannelPair pair;
  pair.theirs.reset();
  EXPECT_THROW(pair.ours->receive(1024), ChannelClosed);
  // SIGPIPE would end the test program here
  EXPECT_THROW(pair.ours->send(FrameKind::Run, std::string(1 << 20, 'x')), ChannelClosed);
}

TEST(WorkerChannel, AFrameLargerThanAllowedOrOfNoKindIsRefusedBeforeItsPayload) {
  ChannelPair pair;
  pair.ours->send(FrameKind::Outputs, std::string(100, 'x'));
  EXPECT_EQ(error_message([&] { pair.theirs->receive(99); }),
            "a package worker's frame is malformed: kind 4, 100 bytes (at most 99)");
  ChannelPair other;
  other.ours->send(static_cast<FrameKind>(9), "x");
  EXPECT_EQ(error_message([&] { other.theirs->receive(99); }),
            "a package worker's frame is malformed: kind 9, 1 bytes (at most 99)");
}

TEST(WorkerChannel, AMalformedTensorPayloadIsOneLine) {
  std::string payload = encode_tensors(-1, {at::rand({4, 4})});
  int model = 0;
  EXPECT_EQ(error_message([&] { decode_tensors(payload.substr(0, payload.size() - 1), model); }),
            "a package worker's frame ends early: 64 bytes expected, 63 left");
  EXPECT_EQ(error_message([&] { decode_tensors(payload + "x", model); }),
            "a package worker's frame has bytes after its tensors");
  std::string wrong_size = payload;
  wrong_size[4 + 4 + 2] = 5;  // the first size: 5 x 4 floats, 64 bytes
  EXPECT_EQ(error_message([&] { decode_tensors(wrong_size, model); }),
            "a package worker's tensor holds 64 bytes, not its sizes'");
  std::string huge = payload;
  huge[4 + 4 + 2 + 7] = 0x7f;  // the first size above 2^62: times 4, more than 64 bits hold
  EXPECT_EQ(error_message([&] { decode_tensors(huge, model); }),
            "a package worker's tensor has sizes out of range");
  std::string undefined = payload;
  undefined[4 + 4] = static_cast<char>(c10::ScalarType::Undefined);
  EXPECT_EQ(error_message([&] { decode_tensors(undefined, model); }),
            "a package worker's tensor is malformed");
}

TEST(PackageWorkers, TheOptionTakesItsThreeWords) {
  EXPECT_EQ(parse_package_workers("frozen"), PackageWorkers::Frozen);
  EXPECT_EQ(parse_package_workers("all"), PackageWorkers::All);
  EXPECT_EQ(parse_package_workers("off"), PackageWorkers::Off);
  EXPECT_EQ(error_message([] { parse_package_workers("yes"); }),
            "package workers must be off, frozen or all, got 'yes'");
}

// A stand-in for the worker program, in Python: it speaks the protocol as
// TORCHSHIP_FAKE_WORKER says (refuses the package, exits on the first request, answers garbage),
// which no real worker does on purpose.
constexpr const char* kFakeWorker = R"PY(#!/usr/bin/python3
import json, os, struct, sys
mode, fd = os.environ["TORCHSHIP_FAKE_WORKER"], 3
def read_exact(n):
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data
def read_frame():
    kind, _, size = struct.unpack("<IIQ", read_exact(16))
    return kind, read_exact(size)
def send(kind, payload):
    os.write(fd, struct.pack("<IIQ", kind, 0, len(payload)) + payload)
read_frame()
if mode == "refuses":
    send(5, json.dumps({"kind": 1, "message": "cannot load it: refused"}).encode())
    sys.exit(0)
send(2, json.dumps({"inputs": "in", "outputs": "out"}).encode())
read_frame()
if mode == "exits":
    sys.exit(3)
send(4, b"\x01\x02")
read_frame()
)PY";

class FakeWorker : public ::testing::Test {
 protected:
  void SetUp() override {
    program_ = std::filesystem::temp_directory_path() /
               ("torchship-fake-worker-" + std::to_string(getpid()));
    std::ofstream(program_) << kFakeWorker;
    std::filesystem::permissions(program_, std::filesystem::perms::owner_all);
    configure_runtime(RuntimeOptions().with_package_workers(PackageWorkers::All, program_));
  }
  void TearDown() override {
    configure_runtime(RuntimeOptions().with_package_workers(PackageWorkers::Off, ""));
    unsetenv("TORCHSHIP_FAKE_WORKER");
    std::filesystem::remove(program_);
  }
  std::unique_ptr<CompiledPackage> open(const std::string& mode) {
    setenv("TORCHSHIP_FAKE_WORKER", mode.c_str(), 1);
    return open_package_in_worker(Archive::open(fixture("plain_conv.pt")), c10::Device("cpu"), 1);
  }
  std::filesystem::path program_;
};

TEST_F(FakeWorker, ALoadItRefusesComesBackAsItsOwnError) {
  try {
    open("refuses");
    FAIL() << "loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadModel);
    EXPECT_STREQ(e.what(), "cannot load it: refused");
  }
}

TEST_F(FakeWorker, ARequestItEndedOnFailsAndAnotherWorkerTakesItsPlace) {
  auto package = open("exits");
  EXPECT_EQ(package->call_spec().inputs, "in");
  std::string first = package->where();
  std::string lead = "the package worker of " + fixture("plain_conv.pt").string() + " (process ";
  for (int run = 0; run < 2; ++run) {
    std::string message = error_message([&] { package->run(-1, {at::ones({2})}); });
    EXPECT_EQ(message.rfind(lead, 0), 0u) << message;
    EXPECT_NE(message.find(") exited with code 3; a new worker serves the next requests"),
              std::string::npos)
        << message;
  }
  EXPECT_NE(package->where(), first);  // a new process each time
}

TEST_F(FakeWorker, AnAnswerThatDoesNotReadIsOneLine) {
  auto package = open("garbage");
  EXPECT_EQ(error_message([&] { package->run(-1, {at::ones({2})}); }),
            "the package worker of " + fixture("plain_conv.pt").string() +
                " answered what torchship cannot read: a package worker's frame ends early: 4 "
                "bytes expected, 2 left");
}

TEST(PackageWorkers, AProgramThatDoesNotStartIsOneLine) {
  configure_runtime(RuntimeOptions().with_package_workers(PackageWorkers::All, "/no/such/worker"));
  EXPECT_EQ(error_message([] {
              open_package_in_worker(Archive::open(fixture("plain_conv.pt")), c10::Device("cpu"),
                                     1);
            }),
            "cannot start the package worker /no/such/worker: No such file or directory");
  configure_runtime(RuntimeOptions().with_package_workers(PackageWorkers::Off, ""));
}

}  // namespace
}  // namespace torchship::backends
