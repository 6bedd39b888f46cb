#!/usr/bin/env bash
# torchship's C++ under AddressSanitizer + UndefinedBehaviorSanitizer (clang, Debian's libtorch):
# builds build-sanitize/, runs the whole C++ test suite there and the CLI's error tests against
# its CLI, then every fuzz target on its corpus (tests/fuzz/corpus/<target>) for
# TORCHSHIP_FUZZ_SECONDS each (default 12: a smoke run in CI; longer runs by hand).
# Needs the Debian stack's fixtures (TORCHSHIP_TORCH=debian scripts/test.sh makes them).
#
#   scripts/sanitize.sh           tests, then the short fuzz runs (what CI runs)
#   scripts/sanitize.sh fuzz T    only fuzz target T, for TORCHSHIP_FUZZ_SECONDS; new inputs
#                                 that reach new code join its corpus
set -euo pipefail
cd "$(dirname "$0")/.."
export TORCHSHIP_TORCH=debian
source scripts/env.sh
fixtures="$PWD/$BUILD/fixtures"
models="$PWD/$BUILD/models"
build=build-sanitize
seconds=${TORCHSHIP_FUZZ_SECONDS:-12}

if ! command -v clang++-14 >/dev/null || [ ! -f /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ]; then
  echo "sanitize: clang-14 and libclang-rt-14-dev are needed (scripts/setup-deps.sh installs them)" >&2
  exit 2
fi
if [ ! -d "$fixtures" ]; then
  echo "sanitize: no fixtures in $fixtures; run TORCHSHIP_TORCH=debian scripts/test.sh first" >&2
  exit 2
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${CMAKE_LAUNCHER[@]}" \
    -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14
fi
cmake "$build" -DTORCHSHIP_SANITIZE=ON -DTORCHSHIP_BUILD_FUZZERS=ON -DTORCHSHIP_BUILD_CLI=ON \
  > /dev/null
cmake --build "$build" --parallel "$(nproc 2>/dev/null || echo 2)"

# Leaks inside libtorch and OpenCV (registries, thread pools) are theirs: tests/sanitizers/.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TORCHSHIP_FIXTURES="$fixtures" TORCHSHIP_MODELS="$models"

fuzz() {  # target seconds [extra libFuzzer flags]
  local target=$1 corpus="tests/fuzz/corpus/$1" findings="$build/fuzz-findings/$1"
  mkdir -p "$corpus" "$findings"
  echo "== fuzz $target for $2 s"
  # New inputs go to a scratch folder first: the repository's corpus grows only by merge.
  local scratch="$build/fuzz-scratch/$target"
  mkdir -p "$scratch"
  local log="$build/fuzz-$target.log" status=0
  TORCHSHIP_FUZZ_TARGET=$target TORCHSHIP_FUZZ_MODEL="$fixtures/generic.pt" \
    "$build/bin/torchship_fuzz" "$scratch" "$corpus" -max_total_time="$2" -timeout=10 \
    -rss_limit_mb=3072 -malloc_limit_mb=1024 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$findings/" -close_fd_mask=3 "${@:3}" </dev/null >"$log" 2>&1 || status=$?
  grep -E "^#[0-9]+.*DONE|^stat::number_of_executed_units|^stat::peak_rss_mb|ERROR|SUMMARY|==[0-9]+==|Test unit written" "$log" || true
  # A run that ends in any other way than its time running out fails, artifact or not (a
  # crash in libFuzzer itself, a sanitizer abort before an input was written).
  if [ "$status" -ne 0 ]; then
    tail -30 "$log" >&2
    echo "sanitize: fuzz target $target exited with status $status: $log" >&2
    return 1
  fi
  # A slow unit (libFuzzer's report of an input that ran over 10 s) says as much about the
  # machine's load as about the code: shown, not failed; a hang past -timeout is a finding.
  for slow in "$findings"/slow-unit-*; do
    if [ -e "$slow" ]; then
      echo "sanitize: $target: a slow input (machine load?): $slow"
      rm "$slow"
    fi
  done
  if ls "$findings"/* >/dev/null 2>&1; then
    echo "sanitize: fuzz target $target found inputs that fail: $findings" >&2
    return 1
  fi
}

if [ "${1:-}" = fuzz ]; then
  fuzz "$2" "$seconds"
  exit
fi

echo "== C++ tests under ASan + UBSan ($build)"
ctest --test-dir "$build" --output-on-failure --no-tests=error
echo "== the CLI's arguments and inputs under ASan + UBSan (tests/python/test_cli_errors.py)"
TORCHSHIP_CLI="$PWD/$build/bin/torchship" "$PY" -m pytest tests/python/test_cli_errors.py -q \
  -p no:cacheprovider
echo "== regression inputs: every file of every corpus, once"
for corpus in tests/fuzz/corpus/*/; do
  target=$(basename "$corpus")
  log="$build/regression-$target.log"
  if ! TORCHSHIP_FUZZ_TARGET=$target TORCHSHIP_FUZZ_MODEL="$fixtures/generic.pt" \
      "$build/bin/torchship_fuzz" -runs=0 -timeout=10 -malloc_limit_mb=1024 \
      -artifact_prefix="$build/" "$corpus" </dev/null >"$log" 2>&1; then
    tail -30 "$log" >&2
    echo "sanitize: an input of $corpus fails again" >&2
    exit 1
  fi
  echo "$target: $(ls "$corpus" | wc -l) inputs pass"
done
# A fixed seed: CI explores the same inputs for the same code and corpus, so that its verdict
# changes with the code, not by chance; the long runs (fuzz T) draw a new seed each time.
for target in npy json_tree kserve grpc_request manifest golden_index archive input_spec image; do
  fuzz "$target" "$seconds" -seed=1
done
echo "== sanitizers and fuzzers clean"
