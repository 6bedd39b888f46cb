#!/usr/bin/env bash
# The README's first command: set up, build, export the article's pipelines, and run them on a
# real photo (chelsea.png, a cat, from python3-skimage).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
CAT=/usr/lib/python3/dist-packages/skimage/data/chelsea.png

scripts/setup-deps.sh
scripts/build.sh > /dev/null
echo
if [ ! -f build/models/classifier.pt ] || [ ! -f build/models/segmentation.pt ]; then
  echo "== exporting the article's pipelines (random weights: no pretrained weights offline)"
  "$PY" examples/article/export.py build/models
fi
ts=build/bin/torchship

echo "== torchship info build/models/classifier.pt"
$ts info build/models/classifier.pt
echo
echo "== torchship classify build/models/classifier.pt chelsea.png"
echo "   (ResNet34 with RANDOM weights: no pretrained weights can be downloaded here, so the"
echo "   labels below are not meaningful; the pipeline and its numbers are what is shown)"
$ts classify build/models/classifier.pt "$CAT" --top-k 3 2> >(grep -v "^libpng warning" >&2)
echo
echo "== torchship segment build/models/segmentation.pt chelsea.png --overlay build/overlay.png"
$ts segment build/models/segmentation.pt "$CAT" --overlay build/overlay.png 2> >(grep -v "^libpng warning" >&2)
