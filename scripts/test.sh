#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, makes the Python reference fixtures,
# then runs the C++ tests (ctest / GoogleTest) and the Python tests (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3  # Debian's interpreter, where python3-torch lives

scripts/setup-deps.sh
scripts/build.sh
"$PY" tests/fixtures/make_fixtures.py build/fixtures
"$PY" examples/fashion_mnist/build.py build/models --testset  # trains once, then cached
ctest --test-dir build --output-on-failure
"$PY" -m pytest tests/python -q -p no:cacheprovider
