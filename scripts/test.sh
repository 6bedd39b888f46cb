#!/usr/bin/env bash
# The whole test suite on one PyTorch stack (scripts/env.sh; TORCHSHIP_TORCH=pypi by default):
# installs what is missing, builds, makes the Python reference fixtures with that stack's torch,
# then runs the C++ tests (ctest / GoogleTest) and the Python tests (pytest).
#
#   scripts/test.sh        the default stack (PyPI's torch 2.x)
#   scripts/test.sh all    what CI runs: both stacks, then archives across versions (each
#                          build checks the other's), then the C++ tests again on the CPU kernels
#                          of other machines (AVX2, and no vector extensions at all), then the
#                          C++ tests under ASan + UBSan and a short run of each fuzz target
#                          (scripts/sanitize.sh), then the install paths (portable, below)
#   scripts/test.sh portable   the wheels (for torch 2.13.0 and 2.14.1), the tarball and the
#                          container image (scripts/build-portable.sh), each installed on a clean
#                          Debian 12 in podman or beside its torch (tests/portable)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = portable ]; then
  started=$SECONDS
  echo "== install paths: the wheels, the tarball and the image on a clean Debian 12"
  scripts/build-portable.sh
  export TORCHSHIP_TORCH=portable
  source scripts/env.sh
  "$PY" -m pytest tests/portable -q -p no:cacheprovider
  echo "== install paths passed in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s;" \
       "seconds per step: $(tr -d '\n' < "$BUILD/portable-times.json")"
  exit 0
fi

# Free space where the builds, pytest's folders and podman's images go: CI needs about 25 GB
# (five builds of about 3 GB, the install paths' images), and the disk is shared.
report_disk() {
  echo "== free disk: $(df -h --output=avail . /tmp /var/lib 2>/dev/null | tail -n +2 | xargs) (build, /tmp, /var/lib)"
}

if [ "${1:-}" = all ]; then
  started=$SECONDS
  report_disk
  TORCHSHIP_TORCH=pypi scripts/test.sh
  TORCHSHIP_TORCH=debian scripts/test.sh
  echo "== archives across versions: each build checks the archives the other's torch made"
  source scripts/env.sh  # the default stack's interpreter runs pytest
  TORCHSHIP_CROSS_BUILDS="build build-debian" "$PY" -m pytest tests/python/test_cross_version.py \
    -q -p no:cacheprovider
  echo "== C++ tests on other CPUs' kernels, against fixtures made on this CPU's ($(( (SECONDS - started) / 60 )) min in)"
  for stack in pypi debian; do
    build=$(TORCHSHIP_TORCH=$stack bash -c 'source scripts/env.sh; echo "$BUILD"')
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 ctest --test-dir "$build" --output-on-failure --no-tests=error
    ATEN_CPU_CAPABILITY=default ctest --test-dir "$build" --output-on-failure --no-tests=error
  done
  echo "== sanitizers and fuzzers ($(( (SECONDS - started) / 60 )) min in)"
  scripts/sanitize.sh
  report_disk
  scripts/test.sh portable
  report_disk
  echo "== all passed in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
  exit 0
fi

source scripts/env.sh
if [ "$TORCHSHIP_TORCH" = portable ]; then
  echo "the portable stack is tested by installing what it builds: scripts/test.sh portable" >&2
  exit 2
fi
started=$SECONDS
echo "== torchship tests on the $TORCHSHIP_TORCH stack ($BUILD)"
scripts/setup-deps.sh
scripts/setup-python.sh
scripts/build.sh
"$PY" tests/fixtures/make_fixtures.py "$BUILD/fixtures"
"$PY" examples/fashion_mnist/build.py "$BUILD/models" --testset  # trains once, then cached
ctest --test-dir "$BUILD" --output-on-failure --no-tests=error
# The slowest tests, for keeping CI's time in bounds.
"$PY" -m pytest tests/python -q -p no:cacheprovider --durations=15
echo "== the $TORCHSHIP_TORCH stack passed in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
