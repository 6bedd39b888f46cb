#!/usr/bin/env bash
# A clean Debian 12 to install torchship into, as a podman image (no registry is needed):
# `debootstrap --variant=minbase` with only python3, python3-venv and pip added (no compiler, no
# -dev package), kept as a tar in $TORCHSHIP_CACHE and imported once per machine.
# Prints the image's name on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
export TORCHSHIP_CACHE="${TORCHSHIP_CACHE:-$HOME/.cache/torchship}"
image=localhost/torchship-clean-debian:12
if podman image exists "$image"; then
  echo "$image"
  exit 0
fi
tarball="$TORCHSHIP_CACHE/rootfs-debian12-minbase-python.tar"
if [ ! -f "$tarball" ]; then
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources \
             2>/dev/null | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
  root=$(mktemp -d)
  echo "setup: debootstrap --variant=minbase bookworm from $mirror (about a minute)" >&2
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip bookworm "$root" \
    "$mirror" > "$TORCHSHIP_CACHE/debootstrap.log"
  rm -rf "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  rm -rf "$root"
fi
podman import --quiet "$tarball" "$image" > /dev/null
echo "$image"
