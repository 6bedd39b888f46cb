"""MTCNN's whole face detector (facenet-pytorch's pretrained PNet, RNet and ONet with the
pipeline of mtcnn_pipeline.py) exported as one detection archive, in both formats.

    ~/.cache/torchship/venv-*/bin/python examples/face_detection/export.py OUT_DIR
        [--format torchscript aoti] [--reference IMAGE ...]

writes OUT_DIR/face_detector.pt (scripted: any image size) and OUT_DIR/face_detector.pt2
(torch.export + AOTInductor, compiled for 512 x 512 images: torch.export specializes the
pyramid's sizes, int(h * scale + 1), to the example's; the manifest resizes other images to it
and C++ maps the boxes back). --reference prints, per image, what facenet-pytorch's own
MTCNN.detect finds in it: the answer `torchship detect` is held against.
"""

import argparse
import os
import sys
import warnings
from typing import Dict, List

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
sys.path.insert(0, HERE)

import torchship  # noqa: E402
from torchship.aoti import available as aoti_available  # noqa: E402
from mtcnn_pipeline import pretrained_face_detector  # noqa: E402

FILES = {"torchscript": "face_detector.pt", "aoti": "face_detector.pt2"}
AOTI_SIZE = (512, 512)
LANDMARKS = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
PHOTOS = "/usr/lib/python3/dist-packages/skimage/data"


def read_rgb(path: str) -> torch.Tensor:
    """uint8 H x W x 3 RGB as PIL decodes it (what MTCNN.detect is given); grey images are
    repeated over three channels, as C++ decodes them."""
    return torch.from_numpy(np.array(Image.open(path).convert("RGB")))


def manifest(size=None) -> torchship.Manifest:
    return torchship.Manifest(
        name="mtcnn-face-detector",
        task="detection",
        inputs=[torchship.image_input("image", resize=size)],
        outputs=[torchship.tensor_spec("boxes", "FP32", [-1, 4]),
                 torchship.tensor_spec("scores", "FP32", [-1]),
                 torchship.tensor_spec("landmarks", "FP32", [-1, 5, 2])],
        labels=["face"],
        detection=torchship.Detection(boxes="boxes", scores="scores", keypoints="landmarks",
                                      keypoint_names=LANDMARKS),
    )


def export(out_dir: str, formats: List[str]) -> List[str]:
    detector = pretrained_face_detector()
    astronaut = read_rgb(os.path.join(PHOTOS, "astronaut.png"))
    camera = read_rgb(os.path.join(PHOTOS, "camera.png"))
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for format in formats:
        path = os.path.join(out_dir, FILES[format])
        if format == "aoti":
            torchship.export(detector, (astronaut,), path, format="aoti",
                             manifest=manifest(AOTI_SIZE), golden_inputs=[(camera,)])
        else:
            # A photo without a face is a golden case too: every stage then runs on no boxes.
            coffee = read_rgb(os.path.join(PHOTOS, "coffee.png"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torchship.ExportWarning)  # "deprecated"
                torchship.export(detector, (astronaut,), path, method="script",
                                 manifest=manifest(), golden_inputs=[(camera,), (coffee,)])
        written.append(path)
    return written


def reference(path: str) -> Dict:
    """facenet-pytorch's MTCNN.detect on the image, as JSON."""
    from facenet_pytorch import MTCNN
    boxes, scores, landmarks = MTCNN().detect(Image.open(path).convert("RGB"), landmarks=True)
    if boxes is None:
        return {"path": path, "boxes": [], "scores": [], "landmarks": []}
    return {"path": path, "boxes": boxes.tolist(), "scores": scores.tolist(),
            "landmarks": landmarks.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--format", nargs="+", choices=list(FILES), default=list(FILES))
    parser.add_argument("--reference", nargs="*", default=[], metavar="IMAGE")
    args = parser.parse_args()
    formats = [f for f in args.format if f != "aoti" or aoti_available()]
    for path in export(args.out_dir, formats):
        print(f"wrote {path}", file=sys.stderr)
    for image in args.reference:
        found = reference(image)
        print(f"Python (facenet-pytorch's MTCNN.detect): {os.path.basename(image)}: "
              f"{len(found['boxes'])} face{'' if len(found['boxes']) == 1 else 's'}")
        for box, score in zip(found["boxes"], found["scores"]):
            print(f"  face {score:.4f}  box {' '.join(f'{v:.1f}' for v in box)}")


if __name__ == "__main__":
    main()
