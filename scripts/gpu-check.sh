#!/usr/bin/env bash
# CUDA parity, on a machine with an NVIDIA GPU: builds torchship against the PyPI stack's CUDA
# wheel (scripts/env.sh), makes the fixtures and the Fashion-MNIST archives on the CPU as the
# suite does, then runs the Cuda.* tests, which skip elsewhere and must run here: every fixture
# archive reproduces its CPU-recorded golden vectors on the GPU, one archive serves both
# devices (the article's classifier and segmentation pipeline), and trained-model batches agree
# between CPU and GPU. Prints the GPU and the test summary; exit 0 only when all ran and passed.
set -euo pipefail
cd "$(dirname "$0")/.."
export TORCHSHIP_TORCH=pypi
source scripts/env.sh

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L; then
  echo "gpu-check: no NVIDIA GPU visible (nvidia-smi): run this on a machine with one" >&2
  exit 2
fi
scripts/setup-deps.sh
scripts/setup-python.sh
scripts/build.sh
"$PY" tests/fixtures/make_fixtures.py "$BUILD/fixtures"
"$PY" examples/fashion_mnist/build.py "$BUILD/models"
"$BUILD/bin/torchship" --version
TORCHSHIP_REQUIRE_CUDA=1 "$BUILD/bin/torchship_tests" --gtest_filter='Cuda.*'
