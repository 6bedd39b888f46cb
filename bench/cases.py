"""The benchmark cases: models, archives, inputs and ONNX files, made by the stack's own torch (a
TorchScript archive saved by torch 2.x does not load in libtorch 1.13) from fixed seeds, so that
every runner computes the same function on the same input.

    PY -m bench cases OUT_DIR MODELS   # writes OUT_DIR/cases.json and the files it names;
                                       # MODELS: the stack's build/models (scripts/demo.sh)

Run by bench/compare.py with each stack's interpreter.
"""

import argparse
import json
import os
import warnings
from typing import List, Optional

import numpy as np
import torch
import torchvision

from bench.example_modules import example_module


def export_onnx(module: torch.nn.Module, x: torch.Tensor, path: str) -> None:
    options = {"dynamo": False} if torch.__version__ >= "2.5" else {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), path, opset_version=17 if options else 13,
                          input_names=["input"], do_constant_folding=True, **options)


def resnet34_plain(out: str) -> dict:
    """ResNet34 as a user saves it: torch.jit.save(torch.jit.script(model)), no manifest, no
    golden vectors; one float 1 x 3 x 224 x 224 input."""
    torch.manual_seed(0)
    model = torchvision.models.resnet34().eval()
    weights = os.path.join(out, "resnet34.pth")
    torch.save(model.state_dict(), weights)
    archive = os.path.join(out, "resnet34_plain.pt")
    torch.jit.save(torch.jit.script(model), archive)
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    np.save(os.path.join(out, "resnet34_input.npy"), x.numpy())
    export_onnx(model, x, os.path.join(out, "resnet34.onnx"))
    return {"id": "resnet34", "name": "ResNet34, plain `torch.jit.save` archive, 1x3x224x224 fp32",
            "eager": {"kind": "resnet34", "weights": weights},
            "input": os.path.join(out, "resnet34_input.npy"),
            "archives": {"fp32": archive}, "onnx": os.path.join(out, "resnet34.onnx"), "notes": []}


def article_classifier(out: str) -> dict:
    """The article's classifier: ResNet34 with its preprocessing inside (uint8 224 x 224 x 3 in),
    exported by torchship.export in fp32, bf16 and int8."""
    article = example_module("article", "export")
    resnet34_classifier = example_module("article", "pipelines").resnet34_classifier
    model = resnet34_classifier().eval()
    image = torch.randint(0, 256, (224, 224, 3), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(2))
    np.save(os.path.join(out, "classifier_input.npy"), image.numpy())
    archives, notes = {}, []
    for precision in ("fp32", "bf16", "int8"):
        path = os.path.join(out, f"classifier_{precision}.pt")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                archives[precision] = article.export_classifier(path, precision).path
        except Exception as error:  # bf16 convolutions need AVX-512 on torch 1.13
            notes.append(f"{precision} export failed: {str(error).strip().splitlines()[-1]}")
    export_onnx(model, image, os.path.join(out, "classifier.onnx"))
    return {"id": "classifier", "name": "Article classifier (ResNet34 + preprocessing), "
            "224x224x3 uint8", "eager": {"kind": "classifier"},
            "input": os.path.join(out, "classifier_input.npy"), "archives": archives,
            "onnx": os.path.join(out, "classifier.onnx"), "notes": notes}


def fashion_mnist(out: str, models: str) -> dict:
    """The trained Fashion-MNIST CNN, batch 256, through the archives the test suite checks."""
    build = example_module("fashion_mnist", "build")
    images = torch.randint(0, 256, (256, 28, 28, 1), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(3))
    np.save(os.path.join(out, "fashion_input.npy"), images.numpy())
    fashion = example_module("fashion_mnist", "model")
    weights = build.cached_weights()
    model = fashion.FashionPipeline(fashion.FashionNet())
    model.net.load_state_dict(torch.load(weights))
    export_onnx(model.eval(), images, os.path.join(out, "fashion.onnx"))
    archives = {precision: os.path.join(models, build.archive_name(precision) + ".pt")
                for precision in ("fp32", "bf16", "int8")}
    return {"id": "fashion", "name": "Fashion-MNIST CNN (trained), batch 256 of 28x28x1 uint8",
            "eager": {"kind": "fashion", "weights": weights},
            "input": os.path.join(out, "fashion_input.npy"),
            "archives": {k: v for k, v in archives.items() if os.path.exists(v)},
            "onnx": os.path.join(out, "fashion.onnx"), "notes": []}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="where cases.json and the files it names go")
    parser.add_argument("models", help="the stack's build/models")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out_dir)
    models = os.path.abspath(args.models)
    os.makedirs(out, exist_ok=True)
    cases = [resnet34_plain(out), article_classifier(out), fashion_mnist(out, models)]
    # The one-image job's photo: scikit-image's cat, enlarged to 1920 x 1080, as a JPEG.
    import cv2
    photo = os.path.join(out, "photo_1920x1080.jpg")
    source = "/usr/lib/python3/dist-packages/skimage/data/chelsea.png"
    cv2.imwrite(photo, cv2.resize(cv2.imread(source), (1920, 1080)))
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"cases": cases, "photo": photo,
                   "one_image_archive": cases[1]["archives"]["fp32"]}, f, indent=2)


if __name__ == "__main__":
    main()
