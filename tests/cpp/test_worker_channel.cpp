// The channel between torchship and a package worker process (backends/worker_channel.h): frames
// and tensors across a socket, what a closed or malformed one gives, and the option's words.
#include <gtest/gtest.h>

#include <thread>

#include <sys/socket.h>

#include <ATen/ATen.h>

#include "backends/worker_channel.h"
#include "fixtures.h"
#include "torchship/runtime.h"

namespace torchship::backends {
namespace {

using testing::error_message;

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
}

TEST(PackageWorkers, TheOptionTakesItsThreeWords) {
  EXPECT_EQ(parse_package_workers("frozen"), PackageWorkers::Frozen);
  EXPECT_EQ(parse_package_workers("all"), PackageWorkers::All);
  EXPECT_EQ(parse_package_workers("off"), PackageWorkers::Off);
  EXPECT_EQ(error_message([] { parse_package_workers("yes"); }),
            "package workers must be off, frozen or all, got 'yes'");
}

}  // namespace
}  // namespace torchship::backends
