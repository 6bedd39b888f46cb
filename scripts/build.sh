#!/usr/bin/env bash
# Configures and builds torchship (Release) against the libtorch of scripts/env.sh's stack:
# build/ for PyPI's wheel (found as users do, through torch.utils.cmake_prefix_path),
# build-debian/ for Debian's.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
prefix=()
if [ "$TORCHSHIP_TORCH" = pypi ]; then
  # torch's CMake package, and OpenVINO's where the virtualenv has it (the third backend)
  prefix=(-DCMAKE_PREFIX_PATH="$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')$(
    "$PY" -c 'import openvino.utils as u; print(";" + u.get_cmake_path())' 2>/dev/null || true)")
fi
# A cache configured against another libtorch (e.g. a virtualenv since replaced) starts over.
stamp="${prefix[*]:-system}"
if [ -f "$BUILD/CMakeCache.txt" ] && [ "$(cat "$BUILD/.torch-prefix" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$BUILD/CMakeCache.txt" "$BUILD/CMakeFiles"
fi
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${prefix[@]}" "${CMAKE_LAUNCHER[@]}"
  echo "$stamp" > "$BUILD/.torch-prefix"
fi
cmake --build "$BUILD" --parallel "$(nproc 2>/dev/null || echo 2)"
