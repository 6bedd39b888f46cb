#!/usr/bin/env bash
# What the benchmarks need beyond the test suite: python3-onnx (to export and clean the ONNX
# baselines), hey (HTTP load), FastAPI + uvicorn (the Python serving baseline) and ONNX Runtime
# from npm (onnxruntime-node; its CPU library ships inside the
# package, so the install script that would fetch GPU binaries is skipped). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
missing=()
for p in python3-onnx hey python3-fastapi uvicorn; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  packages=("${missing[@]}")
  command -v node >/dev/null || packages+=(nodejs)
  command -v npm >/dev/null || packages+=(npm)
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
fi
if [ ! -d bench/onnxruntime/node_modules/onnxruntime-node ]; then
  (cd bench/onnxruntime && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
# ONNX Runtime from PyPI into the PyPI stack's virtualenv (bench/formats.py).
TORCHSHIP_TORCH=pypi bash -c 'source scripts/env.sh && "$PY" -m pip install --quiet \
  --disable-pip-version-check -r scripts/requirements-bench.txt'
echo "bench setup: python3-onnx, hey, FastAPI, node $(node --version), onnxruntime-node, onnxruntime (PyPI) ready"
