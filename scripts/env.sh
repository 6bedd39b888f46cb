# Sourced by the scripts: which PyTorch this run uses, and where its files go.
#
#   TORCHSHIP_TORCH=pypi (default)  PyPI's torch + torchvision (scripts/requirements-pypi.txt) in
#                                   a project virtualenv under $TORCHSHIP_CACHE; C++ built
#                                   against the wheel's libtorch into build/
#   TORCHSHIP_TORCH=debian          Debian 12's python3-torch and libtorch-dev 1.13 (the system
#                                   interpreter /usr/bin/python3); C++ built into build-debian/
#   TORCHSHIP_TORCH=portable        PyTorch's CPU-only torch 2.13.0 (scripts/requirements-portable.txt)
#                                   in its own virtualenv; C++ built into build-portable/ as the
#                                   wheel, tarball and container image ship it
#                                   (scripts/build-portable.sh)
#
# Sets PY (the interpreter with that torch), BUILD (the build folder), VENV and REQUIREMENTS
# (virtualenv stacks only), and exports TORCHSHIP_BUILD for the Python tests.
TORCHSHIP_TORCH="${TORCHSHIP_TORCH:-pypi}"
export TORCHSHIP_CACHE="${TORCHSHIP_CACHE:-$HOME/.cache/torchship}"
case "$TORCHSHIP_TORCH" in
  pypi | portable)
    # Keyed by the requirements and the base interpreter: a change to either makes a new one.
    REQUIREMENTS=scripts/requirements-$TORCHSHIP_TORCH.txt
    VENV_PREFIX="$TORCHSHIP_CACHE/venv-"
    [ "$TORCHSHIP_TORCH" = portable ] && VENV_PREFIX="$TORCHSHIP_CACHE/venv-portable-"
    VENV="$VENV_PREFIX$( (cat "$REQUIREMENTS"; /usr/bin/python3 --version) | sha256sum | cut -c1-12)"
    PY="$VENV/bin/python"
    BUILD=build
    [ "$TORCHSHIP_TORCH" = portable ] && BUILD=build-portable
    ;;
  debian)
    VENV=""
    PY=/usr/bin/python3
    BUILD=build-debian
    ;;
  *)
    echo "TORCHSHIP_TORCH must be pypi, debian or portable, got '$TORCHSHIP_TORCH'" >&2
    exit 2
    ;;
esac
export TORCHSHIP_TORCH
export TORCHSHIP_BUILD="$PWD/$BUILD"

# ccache keeps compiled objects across builds and fresh clones (CI clones anew each time): paths
# under the clone are hashed relative to it, and the precompiled headers need the sloppiness
# settings to be reused. CMAKE_LAUNCHER goes on each configure's command line.
CMAKE_LAUNCHER=()
if command -v ccache >/dev/null; then
  CMAKE_LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}" CCACHE_NOHASHDIR=1
  export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
  export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-10G}"
  # ...and in the cache's own configuration, for a build run without these variables (ninja by
  # hand): ccache's default 5 GB would evict what CI's five builds (with their precompiled
  # headers) need on its next run.
  env -u CCACHE_MAXSIZE ccache -p 2>/dev/null | grep -q "^(.*ccache.conf) max_size = " \
    || ccache -M "$CCACHE_MAXSIZE" > /dev/null || true
fi
