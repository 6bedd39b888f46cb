#!/usr/bin/env bash
# What users install instead of building: torchship built against PyTorch's CPU-only torch 2.13.0
# (scripts/requirements-portable.txt) as a shared library with OpenCV inside
# (scripts/setup-opencv.sh), then packaged (scripts/package_portable.py) as
#
#   build-portable/dist/torchship-<v>-cp311-cp311-manylinux_*.whl  the exporter, the `torchship`
#       command (CLI and server), libtorchship with headers and CMake config; pinned to that torch
#   build-portable/dist/torchship-<v>-libtorch2.13.0-x86_64.tar.gz  the C++ side with its libtorch
#
# The container image (docker/Dockerfile) installs the wheel. tests/portable/test_install.py
# installs all three on a clean Debian (TORCHSHIP_TORCH=portable scripts/test.sh portable).
set -euo pipefail
cd "$(dirname "$0")/.."
export TORCHSHIP_TORCH=portable
source scripts/env.sh
started=$SECONDS
scripts/setup-deps.sh
scripts/setup-python.sh
opencv=$(scripts/setup-opencv.sh | tail -1)
torch_prefix=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
stamp="$torch_prefix;$opencv"
if [ -f "$BUILD/CMakeCache.txt" ] && [ "$(cat "$BUILD/.torch-prefix" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$BUILD/CMakeCache.txt" "$BUILD/CMakeFiles"
fi
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${CMAKE_LAUNCHER[@]}" \
    -DCMAKE_PREFIX_PATH="$torch_prefix" -DOpenCV_DIR="$opencv/lib/cmake/opencv4" \
    -DTORCHSHIP_SHARED=ON -DTORCHSHIP_BUNDLE_JSON=ON -DTORCHSHIP_BUILD_TESTS=OFF \
    -DCMAKE_INSTALL_LIBDIR=lib -DTORCHSHIP_INSTALL_RPATH_TORCH='$ORIGIN/../../torch/lib'
  echo "$stamp" > "$BUILD/.torch-prefix"
fi
cmake --build "$BUILD" --parallel "$(nproc 2>/dev/null || echo 2)"
rm -rf "$BUILD/stage"
cmake --install "$BUILD" --prefix "$BUILD/stage" > /dev/null
wheel=$("$PY" scripts/package_portable.py wheel "$BUILD/stage" "$BUILD/dist")
tarball=$("$PY" scripts/package_portable.py tarball "$wheel" "$BUILD/dist")
echo "== portable packages in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s:"
ls -l "$wheel" "$tarball" | awk '{printf "  %s  %.1f MB\n", $NF, $5 / 1e6}'
