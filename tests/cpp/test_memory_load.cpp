// Archives loaded from bytes held in memory (Archive::from_bytes), as an application that embeds
// or decrypts its model does: every form, proved by its golden vectors, with the temporary folder
// unwritable so that any write to disk fails the load (AOTInductor's package loader unpacks into
// it; torchship loads a package's library from an anonymous in-memory file instead).
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

#include "fixtures.h"
#include "torchship/torchship.h"

namespace torchship {
namespace {

using testing::error_message;
using testing::fixture;
using testing::have_fixture;

std::string bytes_of(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// TMPDIR names a folder that does not exist while this lives: libtorch's, AOTInductor's and
// OpenCV's temporary files would go there, and fail.
class UnwritableTemporaryFolder {
 public:
  UnwritableTemporaryFolder() {
    if (const char* old = std::getenv("TMPDIR")) old_ = old;
    setenv("TMPDIR", "/nonexistent/torchship-no-writes", 1);
  }
  ~UnwritableTemporaryFolder() {
    if (old_) {
      setenv("TMPDIR", old_->c_str(), 1);
    } else {
      unsetenv("TMPDIR");
    }
  }

 private:
  std::optional<std::string> old_;
};

bool built_with(const std::string& backend) {
  auto backends = compiled_backends();
  return std::find(backends.begin(), backends.end(), backend) != backends.end();
}

TEST(MemoryLoad, EveryFormLoadsFromBytesWithTheTemporaryFolderUnwritable) {
  std::vector<std::string> names = {"classifier.pt", "segmentation.pt"};
  if (built_with("aoti")) names.insert(names.end(), {"classifier.pt2", "structured.pt2"});
  if (built_with("openvino")) names.insert(names.end(), {"classifier.ov", "structured.ov"});
  if (built_with("aoti") && built_with("openvino")) names.push_back("tiny.torchship");
  for (const auto& name : names) {
    if (!have_fixture(name)) continue;  // made only where the fixtures' torch exports it
    std::string bytes = bytes_of(fixture(name));
    UnwritableTemporaryFolder no_writes;
    Model model = Model::load(Archive::from_bytes(bytes, "embedded " + name));
    EXPECT_EQ(model.archive().path(), "embedded " + name);
    GoldenReport report = check_golden(model);
    EXPECT_TRUE(report.ok()) << name;
    EXPECT_GT(report.cases.size(), 0u) << name;
  }
}

TEST(MemoryLoad, BytesThatAreNoArchiveAreRefusedInOneLine) {
  EXPECT_EQ(error_message([] { Archive::from_bytes("", "embedded model"); }),
            "cannot load embedded model: the archive is empty (0 bytes), expected a zip");
  EXPECT_EQ(error_message([] { Archive::from_bytes("not a zip", "embedded model"); }),
            "cannot load embedded model: not a TorchScript archive (expected a zip file written "
            "by torch.jit.save)");
  std::string half = bytes_of(fixture("classifier.pt"));
  half.resize(half.size() / 2);
  EXPECT_EQ(error_message([&] {
              Archive::from_bytes(half, "embedded model");
            }).rfind("cannot load embedded model: the zip is truncated or corrupt", 0),
            0u);
}

}  // namespace
}  // namespace torchship
