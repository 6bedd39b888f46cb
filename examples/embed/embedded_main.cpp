// Classifies an image with the archive compiled into this program: usage `classify_embedded
// IMAGE`. The archive is loaded from memory (torchship::Archive::from_bytes): no model file is
// read, and nothing is written to disk where the system has anonymous files (Linux).
#include <iostream>
#include <string_view>

#include <torchship/torchship.h>

extern "C" const char embedded_model_begin[];  // embedded_model.cpp
extern "C" const char embedded_model_end[];

int main(int argc, char** argv) try {
  if (argc != 2) return std::cerr << "usage: classify_embedded IMAGE\n", 2;
  std::string_view bytes(embedded_model_begin,
                         static_cast<size_t>(embedded_model_end - embedded_model_begin));
  auto model = torchship::Model::load(torchship::Archive::from_bytes(bytes, "the embedded model"));
  for (const auto& p : model.classify(std::filesystem::path(argv[1]), 3))
    std::cout << p.index << ' ' << p.label << ' ' << p.score << '\n';
} catch (const torchship::Error& e) {
  return std::cerr << "error: " << e.what() << '\n', 2;
}
