# Sourced by the scripts: which PyTorch this run uses, and where its files go.
#
#   TORCHSHIP_TORCH=pypi (default)  PyPI's torch + torchvision (scripts/requirements-pypi.txt) in
#                                   a project virtualenv under $TORCHSHIP_CACHE; C++ built
#                                   against the wheel's libtorch into build/
#   TORCHSHIP_TORCH=debian          Debian 12's python3-torch and libtorch-dev 1.13 (the system
#                                   interpreter /usr/bin/python3); C++ built into build-debian/
#
# Sets PY (the interpreter with that torch), BUILD (the build folder), VENV (pypi only), and
# exports TORCHSHIP_BUILD for the Python tests.
TORCHSHIP_TORCH="${TORCHSHIP_TORCH:-pypi}"
export TORCHSHIP_CACHE="${TORCHSHIP_CACHE:-$HOME/.cache/torchship}"
case "$TORCHSHIP_TORCH" in
  pypi)
    # Keyed by the requirements and the base interpreter: a change to either makes a new one.
    VENV="$TORCHSHIP_CACHE/venv-$( (cat scripts/requirements-pypi.txt; /usr/bin/python3 --version) |
                                    sha256sum | cut -c1-12)"
    PY="$VENV/bin/python"
    BUILD=build
    ;;
  debian)
    VENV=""
    PY=/usr/bin/python3
    BUILD=build-debian
    ;;
  *)
    echo "TORCHSHIP_TORCH must be pypi or debian, got '$TORCHSHIP_TORCH'" >&2
    exit 2
    ;;
esac
export TORCHSHIP_TORCH
export TORCHSHIP_BUILD="$PWD/$BUILD"
