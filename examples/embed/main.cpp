// Loads an archive and classifies an image: usage `classify_image MODEL IMAGE`.
#include <iostream>

#include <torchship/torchship.h>

int main(int argc, char** argv) try {
  if (argc != 3) return std::cerr << "usage: classify_image MODEL IMAGE\n", 2;
  auto model = torchship::Model::load(argv[1]);
  for (const auto& p : model.classify(std::filesystem::path(argv[2]), 3))
    std::cout << p.index << ' ' << p.label << ' ' << p.score << '\n';
} catch (const torchship::Error& e) {
  return std::cerr << "error: " << e.what() << '\n', 2;
}
