# Instrumented builds (scripts/sanitize.sh):
#   TORCHSHIP_SANITIZE=ON        AddressSanitizer + UndefinedBehaviorSanitizer on torchship's own
#                                code; libtorch, OpenCV and the C++ runtime stay uninstrumented
#                                (ASan still sees their heap: it replaces malloc process-wide).
#   TORCHSHIP_BUILD_FUZZERS=ON   the libFuzzer targets of tests/fuzz (clang), with coverage
#                                instrumentation of the libraries they exercise.
option(TORCHSHIP_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(TORCHSHIP_BUILD_FUZZERS "Build the libFuzzer targets (needs clang)" OFF)

if(TORCHSHIP_SANITIZE)
  # vptr checks compare type_info across libraries; libtorch's come from another compiler, and
  # the check reports every virtual call into it. Everything else of 'undefined' stays on, and
  # any report aborts (no recovery), so that a test cannot pass past one.
  add_compile_options(-fsanitize=address,undefined -fno-sanitize=vptr
                      -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)
  add_link_options(-fsanitize=address,undefined -fno-sanitize=vptr)
endif()

if(TORCHSHIP_BUILD_FUZZERS)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "TORCHSHIP_BUILD_FUZZERS needs clang (libFuzzer); configure with "
                        "CXX=clang++-14 (Debian: clang-14 libclang-rt-14-dev)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
