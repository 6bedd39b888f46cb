#!/usr/bin/env bash
# Installs the Debian packages torchship needs for the PyTorch stack of scripts/env.sh; skips
# the ones already there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

packages=(
  build-essential cmake ninja-build pkg-config curl
  ccache  # compiled objects kept across builds and clean clones (CI's time)
  libjemalloc-dev  # the torchship program's heap (cmake/torchshipAllocator.cmake)
  libopencv-dev nlohmann-json3-dev libcli11-dev libcpp-httplib-dev libgtest-dev libgmock-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler  # serve --grpc-port
  python3-venv
  python3-skimage dataset-fashion-mnist  # a real photo (chelsea.png) and the training data
  nginx  # the scale-out test puts two torchship serve replicas behind it
  clang-14 libclang-rt-14-dev  # scripts/sanitize.sh: ASan + UBSan build, libFuzzer targets
)
if [ "$TORCHSHIP_TORCH" = debian ]; then
  packages+=(
    libtorch-dev python3-torch python3-torchvision python3-numpy python3-opencv python3-pytest
    libopenblas0-openmp  # Debian's libtorch otherwise multiplies matrices with reference BLAS
  )
fi

if [ "$TORCHSHIP_TORCH" = portable ]; then
  packages+=(
    nasm  # OpenCV's bundled libjpeg-turbo with its SIMD code (scripts/setup-opencv.sh)
    debootstrap podman runc  # a clean Debian to install into, and the container image
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} Debian packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
