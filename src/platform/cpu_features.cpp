#include "platform/cpu_features.h"

#include <array>
#include <cstdint>
#include <map>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define TORCHSHIP_X86_CPUID 1
#endif

namespace torchship {
namespace {

#ifdef TORCHSHIP_X86_CPUID
enum Register { EAX, EBX, ECX, EDX };

// Where CPUID reports a feature: leaf, subleaf, register, bit (Intel SDM vol. 2A, CPUID).
struct Bit {
  unsigned leaf, subleaf;
  Register reg;
  unsigned bit;
};

// Which register state the OS must save for a feature's instructions to work (XCR0 bits).
enum class State { Scalar, Avx, Avx512, Amx };

struct Feature {
  Bit where;
  State state;
};

const std::map<std::string, Feature>& vocabulary() {
  static const std::map<std::string, Feature> features = {
      {"movbe", {{1, 0, ECX, 22}, State::Scalar}},
      {"fma", {{1, 0, ECX, 12}, State::Avx}},
      {"avx", {{1, 0, ECX, 28}, State::Avx}},
      {"f16c", {{1, 0, ECX, 29}, State::Avx}},
      {"abm", {{0x80000001, 0, ECX, 5}, State::Scalar}},  // LZCNT
      {"bmi1", {{7, 0, EBX, 3}, State::Scalar}},
      {"avx2", {{7, 0, EBX, 5}, State::Avx}},
      {"bmi2", {{7, 0, EBX, 8}, State::Scalar}},
      {"avx512f", {{7, 0, EBX, 16}, State::Avx512}},
      {"avx512dq", {{7, 0, EBX, 17}, State::Avx512}},
      {"avx512ifma", {{7, 0, EBX, 21}, State::Avx512}},
      {"avx512cd", {{7, 0, EBX, 28}, State::Avx512}},
      {"avx512bw", {{7, 0, EBX, 30}, State::Avx512}},
      {"avx512vl", {{7, 0, EBX, 31}, State::Avx512}},
      {"avx512vbmi", {{7, 0, ECX, 1}, State::Avx512}},
      {"avx512_vbmi2", {{7, 0, ECX, 6}, State::Avx512}},
      {"gfni", {{7, 0, ECX, 8}, State::Scalar}},
      {"vaes", {{7, 0, ECX, 9}, State::Avx}},
      {"vpclmulqdq", {{7, 0, ECX, 10}, State::Avx}},
      {"avx512_vnni", {{7, 0, ECX, 11}, State::Avx512}},
      {"avx512_bitalg", {{7, 0, ECX, 12}, State::Avx512}},
      {"avx512_vpopcntdq", {{7, 0, ECX, 14}, State::Avx512}},
      {"avx512_4fmaps", {{7, 0, EDX, 3}, State::Avx512}},
      {"amx_bf16", {{7, 0, EDX, 22}, State::Amx}},
      {"avx512_fp16", {{7, 0, EDX, 23}, State::Avx512}},
      {"amx_tile", {{7, 0, EDX, 24}, State::Amx}},
      {"amx_int8", {{7, 0, EDX, 25}, State::Amx}},
      {"avx_vnni", {{7, 1, EAX, 4}, State::Avx}},
      {"avx512_bf16", {{7, 1, EAX, 5}, State::Avx512}},
  };
  return features;
}

bool cpuid_bit(const Bit& where) {
  unsigned max_leaf = __get_cpuid_max(where.leaf & 0x80000000u, nullptr);
  if (max_leaf < where.leaf) return false;
  std::array<unsigned, 4> regs{};
  if (!__get_cpuid_count(where.leaf, where.subleaf, &regs[0], &regs[1], &regs[2], &regs[3])) {
    return false;
  }
  return (regs[where.reg] >> where.bit) & 1u;
}

// XCR0: the register state the operating system saves on context switches. A CPU with
// AVX-512 under an OS (or hypervisor) that does not enable it cannot run AVX-512 code.
uint64_t enabled_state() {
  if (!cpuid_bit({1, 0, ECX, 27})) return 0;  // OSXSAVE: xgetbv available
  uint32_t low = 0, high = 0;
  __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
  return (static_cast<uint64_t>(high) << 32) | low;
}

bool state_enabled(State state) {
  static const uint64_t xcr0 = enabled_state();
  auto all = [](uint64_t bits) { return (xcr0 & bits) == bits; };
  switch (state) {
    case State::Scalar:
      return true;
    case State::Avx:
      return all(0x6);  // SSE and AVX state
    case State::Avx512:
      return all(0xE6);  // + opmask, upper ZMM0-15, ZMM16-31
    case State::Amx:
      return all(0x60000);  // XTILECFG, XTILEDATA
  }
  return false;
}
#endif

}  // namespace

bool cpu_has_feature(const std::string& feature, bool* known) {
#ifdef TORCHSHIP_X86_CPUID
  auto it = vocabulary().find(feature);
  if (known) *known = it != vocabulary().end();
  if (it == vocabulary().end()) return false;
  return cpuid_bit(it->second.where) && state_enabled(it->second.state);
#else
  (void)feature;
  if (known) *known = false;
  return false;
#endif
}

std::vector<std::string> missing_cpu_features(const std::vector<std::string>& required) {
  std::vector<std::string> missing;
  for (const auto& feature : required) {
    bool known = false;
    bool present = cpu_has_feature(feature, &known);
    if (known && !present) missing.push_back(feature);
  }
  return missing;
}

}  // namespace torchship
