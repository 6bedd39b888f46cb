"""Common torchvision architectures through torchship.export with the default checks, in both
formats: which export, and for those refused, the finding or error that names the line and the fix.

    ~/.cache/torchship/venv-*/bin/python examples/torchvision/survey.py OUT_DIR [--format ...]
        [--only NAME ...]

Random weights (weights=None): what is surveyed is whether the code exports and computes what
Python computes, not accuracy. Classifiers take a float 1 x 3 x 224 x 224 batch, fixed by the
manifest; the detector (wrapped to take one image and return its boxes, scores and labels: a
detection task) takes a float 3 x 320 x 320 image that C++ decodes and resizes from a file, so
`torchship detect` runs its .pt. Prints one line per architecture and format: exported (seconds, notes) or refused
(the first lines of the reason). A TorchScript export refused with the default method (trace) is
tried again as the refusal's fix says, with method="script".
"""

import argparse
import os
import sys
import time
import warnings

import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

import torchship  # noqa: E402
from torchship.aoti import available as aoti_available  # noqa: E402

CLASSIFIERS = {
    "vit_b_16": torchvision.models.vit_b_16,
    "swin_t": torchvision.models.swin_t,
    "convnext_tiny": torchvision.models.convnext_tiny,
    "efficientnet_b0": torchvision.models.efficientnet_b0,
    "mobilenet_v3_large": torchvision.models.mobilenet_v3_large,
}
DETECTORS = {
    "fasterrcnn_mobilenet_v3_large_320_fpn":
        torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn,
}


def classifier_case(name):
    torch.manual_seed(0)
    model = CLASSIFIERS[name](weights=None).eval()
    manifest = torchship.Manifest(
        name=name, task="classification",
        inputs=[torchship.tensor_spec("x", "FP32", [1, 3, 224, 224])],
        outputs=[torchship.tensor_spec("logits", "FP32", [1, 1000], kind="logits")])
    return model, (torch.rand(1, 3, 224, 224),), manifest


class FirstImage(torch.nn.Module):
    """torchvision's detector on one image: (boxes, scores, labels) of it."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor):
        found = self.detector([image])
        found = found[1] if isinstance(found, tuple) else found  # scripted: (losses, detections)
        return found[0]["boxes"], found[0]["scores"], found[0]["labels"]


def detector_case(name):
    torch.manual_seed(0)
    model = DETECTORS[name](weights=None, weights_backbone=None, box_score_thresh=0.0,
                            box_detections_per_img=20).eval()
    manifest = torchship.Manifest(
        name=name, task="detection",
        inputs=[torchship.image_input("image", layout="CHW", datatype="FP32",
                                      resize=(320, 320))],
        outputs=[torchship.tensor_spec("boxes", "FP32", [-1, 4]),
                 torchship.tensor_spec("scores", "FP32", [-1]),
                 torchship.tensor_spec("labels", "INT64", [-1])],
        detection=torchship.Detection(labels="labels"))
    return FirstImage(model).eval(), (torch.rand(3, 320, 320),), manifest


def export_one(name, format, method, path):
    """Exports one architecture; its findings and notes as one line each. Raises as
    torchship.export does."""
    model, args, manifest = (classifier_case if name in CLASSIFIERS else detector_case)(name)
    options = {"format": "aoti"} if format == "aoti" else {"method": method}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torchship.ExportWarning)
        torchship.export(model, args, path, manifest=manifest, **options)
    return [str(w.message).split("\n")[0] for w in caught
            if issubclass(w.category, torchship.ExportWarning)
            and "deprecates TorchScript" not in str(w.message)]


def attempt(name, format, method, path):
    """One export; prints what came of it. True when it exported."""
    label = f"{name} {format}" + (f" (method={method})" if format != "aoti" else "")
    started = time.monotonic()
    try:
        notes = export_one(name, format, method, path)
    except Exception as error:
        lines = str(error).splitlines()
        print(f"{label}: REFUSED ({type(error).__name__}) after "
              f"{time.monotonic() - started:.0f} s\n    " + "\n    ".join(lines[:8]), flush=True)
        return False
    print(f"{label}: exported in {time.monotonic() - started:.0f} s"
          + "".join(f"\n    {note[:200]}" for note in notes), flush=True)
    return True


def survey(out_dir, formats, only):
    names = [n for n in list(CLASSIFIERS) + list(DETECTORS) if not only or n in only]
    for name in names:
        for format in formats:
            path = os.path.join(out_dir, name + (".pt2" if format == "aoti" else ".pt"))
            if not attempt(name, format, "trace", path) and format == "torchscript":
                attempt(name, format, "script", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--format", nargs="+", default=["torchscript", "aoti"],
                        choices=["torchscript", "aoti"])
    parser.add_argument("--only", nargs="*", default=[])
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    formats = [f for f in args.format if f != "aoti" or aoti_available()]
    survey(args.out_dir, formats, args.only)


if __name__ == "__main__":
    main()
