"""Exports the article's two pipelines (random weights: no pretrained weights can be downloaded
here) into a folder:

    /usr/bin/python3 examples/article/export.py OUT_DIR

writes OUT_DIR/classifier.pt (ResNet34, traced) and OUT_DIR/segmentation.pt (LR-ASPP
MobileNetV3, hybrid: scripted wrapper around the traced network). With --format aoti: the
classifier as OUT_DIR/classifier.pt2 (torch.export + AOTInductor); the segmentation pipeline's
list input cannot be exported that way, and it says why.
"""

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
sys.path.insert(0, HERE)

import torchship  # noqa: E402
from pipelines import (imagenet_labels, lraspp_segmentation, resnet34_classifier,  # noqa: E402
                       voc_labels)


def random_images(count: int, size, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, size, dtype=torch.uint8, generator=generator)
            for _ in range(count)]


def export_classifier(path: str, precision: str = "fp32", format: str = "torchscript",
                      cpu_target: str = "native") -> torchship.ExportResult:
    """precision: fp32, bf16 or int8 (the backbone quantized, calibrated on 16 random images:
    the weights are random too, so only speed and agreement with fp32 mean something).
    format: "torchscript" (traced); "aoti": an AOTInductor .pt2 for `cpu_target`, fp32; or
    "openvino": OpenVINO IR, fp32."""
    model = resnet34_classifier().eval()
    generator = torch.Generator().manual_seed(1)
    example = torch.randint(0, 256, (224, 224, 3), dtype=torch.uint8, generator=generator)
    manifest = torchship.Manifest(
        name="resnet34-classifier",
        task="classification",
        inputs=[torchship.image_input("image", resize=(224, 224))],
        outputs=[torchship.tensor_spec("logits", "FP32", [1, 1000], kind="logits")],
        labels=imagenet_labels(),
    )
    if format == "aoti":
        return torchship.export(model, (example,), path, format="aoti", manifest=manifest,
                                cpu_target=cpu_target)
    if format == "openvino":
        return torchship.export(model, (example,), path, format="openvino", manifest=manifest)
    calibration = [(image,) for image in random_images(16, (224, 224, 3), seed=3)]
    return torchship.export(model, (example,), path, method="trace", manifest=manifest,
                            precision=precision, calibration=calibration, quantize="backbone")


def export_segmentation_batch(model: torch.nn.Module, path: str,
                              manifest: torchship.Manifest) -> torchship.ExportResult:
    """The pipeline's batch form as an AOTInductor package: torch.export refuses its list form
    (it fixes a list's length and its images' sizes; the exporter says so), so the package takes
    one B x H x W x 3 uint8 tensor with batch, height and width dynamic."""
    generator = torch.Generator().manual_seed(3)
    example = torch.randint(0, 256, (2, 64, 96, 3), dtype=torch.uint8, generator=generator)
    other = torch.randint(0, 256, (1, 80, 72, 3), dtype=torch.uint8, generator=generator)
    manifest.inputs = [torchship.image_input("images", layout="BHWC")]
    manifest.batch_dim = True
    return torchship.export(model, (example,), path, golden_inputs=[(other,)], manifest=manifest,
                            format="aoti")


def export_segmentation(path: str, precision: str = "fp32",
                        format: str = "torchscript") -> torchship.ExportResult:
    """precision: fp32 or int8 (the network quantized; bf16 needs a full trace, which the
    list-or-batch input rules out). format="aoti" exports the batch form (one BHWC tensor):
    torch.export cannot take a list of images whose length and sizes vary per call."""
    model = lraspp_segmentation().eval()
    generator = torch.Generator().manual_seed(2)
    images = [torch.randint(0, 256, (64, 96, 3), dtype=torch.uint8, generator=generator)
              for _ in range(2)]
    batch = torch.randint(0, 256, (1, 80, 72, 3), dtype=torch.uint8, generator=generator)
    manifest = torchship.Manifest(
        name="lraspp-segmentation",
        task="segmentation",
        inputs=[torchship.image_input("images")],
        outputs=[torchship.tensor_spec("logits", "FP32", [-1, 21, -1, -1], kind="logits"),
                 torchship.tensor_spec("labels", "INT64", [-1, -1, -1], kind="labels"),
                 torchship.tensor_spec("overlay", "UINT8", [-1, -1, -1, 3], kind="image")],
        labels=voc_labels(),
    )
    if format == "aoti":
        return export_segmentation_batch(model, path, manifest)
    calibration = [([image],) for image in random_images(8, (160, 240, 3), seed=4)]
    return torchship.export(model, (images,), path, method="hybrid", trace=["net"],
                            golden_inputs=[(batch,)], manifest=manifest, precision=precision,
                            calibration=calibration, quantize="net")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--format", choices=("torchscript", "aoti"), default="torchscript",
                        help="aoti: torch.export + AOTInductor .pt2 packages (torch >= 2.6)")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    suffix = ".pt2" if args.format == "aoti" else ".pt"
    for name, export in (("classifier" + suffix, export_classifier),
                         ("segmentation" + suffix, export_segmentation)):
        try:
            result = export(os.path.join(args.out_dir, name), format=args.format)
        except torchship.ExportError as error:
            if args.format != "aoti":
                raise
            print(f"not written: {name}: {error}")
            continue
        worst = max(result.max_errors.values(), default=0.0)
        print(f"wrote {result.path} ({result.manifest['export']['method']}, "
              f"max |exported - eager| = {worst:.2g})")


if __name__ == "__main__":
    main()
