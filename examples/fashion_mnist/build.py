"""Trains (or reuses) the Fashion-MNIST model and exports it as a torchship archive.

    /usr/bin/python3 examples/fashion_mnist/build.py OUT_DIR [--testset]

- weights: trained once and cached in $TORCHSHIP_CACHE (default ~/.cache/torchship), keyed by
  the training sources, so the demo, the tests and CI on the same machine train only once;
- OUT_DIR/fashion_mnist.pt: the archive (uint8 grayscale image of any size in, resized to 28x28
  by the manifest's policy; normalization inside; the ten class names as labels);
- OUT_DIR/fashion_mnist_bf16.pt, fashion_mnist_int8.pt: the same pipeline in bf16 (autocast;
  not where torch cannot run bf16 convolutions on this CPU: 1.13 without AVX-512) and int8
  (post-training quantization of the network, calibrated on 512 training images);
- OUT_DIR/fashion_mnist[_bf16|_int8]_python_logits.npy and _python_predictions.npy: the logits
  and the class Python computes for each test image through each exported module (batches of
  256, in order), for the parity tests;
- OUT_DIR/fashion_mnist.pt2 and fashion_mnist_pt2_python_{logits,predictions}.npy: the fp32
  pipeline as an AOTInductor package (torch >= 2.6 only), with Python's logits through the
  package;
- OUT_DIR/fashion_mnist_accuracy.json: test accuracy per precision, measured in Python;
- with --testset: OUT_DIR/fashion_mnist_test/NNNNN.png, the 10,000 test images, and truth.csv.

Prints each archive's test accuracy, computed in Python through the exported module. Skips
the export when the archives are already there for the same weights and sources.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
from typing import List

import cv2
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

import data  # noqa: E402
import torchship  # noqa: E402
from torchship.torchscript.precision import bf16_convolution_problem  # noqa: E402
from model import FashionNet, FashionPipeline  # noqa: E402

EPOCHS = 12


def sources_key() -> str:
    digest = hashlib.sha256(str(EPOCHS).encode())
    for name in ("data.py", "model.py", "train.py"):
        with open(os.path.join(HERE, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def archive_key() -> str:
    """The weights' key plus everything that shapes the archive and the Python predictions
    recorded beside it (the torchship package, this file, torch and the BLAS it calls)."""
    blas = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    digest = hashlib.sha256(f"{sources_key()} {torch.__version__} {blas}".encode())
    package = os.path.join(HERE, "..", "..", "python", "torchship")
    files = [os.path.abspath(__file__)] + [os.path.join(package, name)
                                           for name in sorted(os.listdir(package))
                                           if name.endswith(".py")]
    for path in files:
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def cached_weights() -> str:
    cache = os.environ.get("TORCHSHIP_CACHE",
                           os.path.join(os.path.expanduser("~"), ".cache", "torchship"))
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, f"fashion_mnist-{sources_key()}.pth")
    if os.path.exists(path):
        print(f"reusing trained weights {path}")
        return path
    print(f"training Fashion-MNIST ({EPOCHS} epochs; cached afterwards in {cache})", flush=True)
    import train
    torch.set_num_threads(os.cpu_count() or 2)
    net = train.train(EPOCHS)
    torch.save(net.state_dict(), path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


def python_logits(module, batch_size: int = 256) -> np.ndarray:
    images, _ = data.load("test")
    batch = torch.from_numpy(images.copy()).unsqueeze(-1)  # N x 28 x 28 x 1 uint8, as C++ decodes
    logits = []
    with torch.no_grad():
        for start in range(0, len(batch), batch_size):
            logits.append(module(batch[start:start + batch_size]))
    return torch.cat(logits).numpy()


PRECISIONS = ("fp32", "bf16", "int8")


def precisions() -> tuple:
    """fp32, bf16 and int8, less bf16 where this torch has no bf16 convolution for this CPU
    (torch 1.13 without AVX-512)."""
    problem = bf16_convolution_problem()
    if problem:
        print(f"skipping the bf16 archive: torch {torch.__version__} cannot run bf16 "
              f"convolutions on this CPU ({problem})")
        return ("fp32", "int8")
    return PRECISIONS

CALIBRATION_IMAGES = 512  # from the training set: the test set stays unseen


def aoti_available() -> bool:
    from torchship import aoti
    return aoti.available()


def archive_name(precision: str) -> str:
    return "fashion_mnist" + ("" if precision == "fp32" else f"_{precision}")


def export(out_dir: str) -> str:
    """Exports the fp32, bf16 and int8 archives, the Python predictions of each on the test set,
    and fashion_mnist_accuracy.json (test accuracy per precision, computed in Python through
    the exported modules). Returns the fp32 archive's path."""
    report_path = os.path.join(out_dir, "fashion_mnist_accuracy.json")
    key_path = os.path.join(out_dir, "fashion_mnist.key")
    weights = cached_weights()
    _, labels = data.load("test")

    def outputs(precision: str) -> List[str]:
        if precision == "aoti":
            return [os.path.join(out_dir, "fashion_mnist" + suffix)
                    for suffix in (".pt2", "_pt2_python_predictions.npy",
                                   "_pt2_python_logits.npy")]
        return [os.path.join(out_dir, archive_name(precision) + suffix)
                for suffix in (".pt", "_python_predictions.npy", "_python_logits.npy")]

    # Reused as recorded: the set of precisions was decided by the CPU that exported them.
    if os.path.exists(key_path) and open(key_path).read() == archive_key() and \
            os.path.exists(report_path):
        recorded = json.load(open(report_path))
        if all(os.path.exists(path) for p in recorded for path in outputs(p)):
            print(f"reusing the {', '.join(recorded)} archives in {out_dir}")
            print_accuracy(recorded)
            return outputs("fp32")[0]
    wanted = precisions()
    for skipped in set(PRECISIONS) - set(wanted):  # from an earlier export on another CPU
        for path in outputs(skipped):
            if os.path.exists(path):
                os.remove(path)
    paths = {p: outputs(p)[0] for p in wanted}
    predictions_paths = {p: outputs(p)[1] for p in wanted}
    logits_paths = {p: outputs(p)[2] for p in wanted}
    net = FashionNet()
    net.load_state_dict(torch.load(weights))
    pipeline = FashionPipeline(net).eval()
    images, _ = data.load("test")
    images = images.copy()
    train_images, _ = data.load("train")
    calibration = [(torch.from_numpy(train_images[i:i + 64].copy()).unsqueeze(-1),)
                   for i in range(0, CALIBRATION_IMAGES, 64)]
    example = torch.from_numpy(images[:8]).unsqueeze(-1)
    manifest = torchship.Manifest(
        name="fashion-mnist-cnn",
        task="classification",
        inputs=[torchship.image_input("images", color="GRAY", layout="BHWC", resize=(28, 28),
                                      interpolation="area")],
        outputs=[torchship.tensor_spec("logits", "FP32", [-1, 10], kind="logits")],
        labels=data.CLASSES,
        batch_dim=True,
    )
    report = {}
    if aoti_available():  # the fp32 pipeline compiled by AOTInductor, checked the same way
        result = torchship.export(
            pipeline, (example,), outputs("aoti")[0], format="aoti", manifest=manifest,
            golden_inputs=[(torch.from_numpy(images[8:9]).unsqueeze(-1),)])
        logits = python_logits(result.module)
        predictions = logits.argmax(1)
        np.save(outputs("aoti")[2], logits)
        np.save(outputs("aoti")[1], predictions)
        report["aoti"] = {"archive": os.path.basename(outputs("aoti")[0]),
                          "accuracy": float((predictions == labels).mean())}
    for precision in wanted:
        result = torchship.export(
            pipeline, (example,), paths[precision], method="trace", manifest=manifest,
            golden_inputs=[(torch.from_numpy(images[8:9]).unsqueeze(-1),)],
            precision=precision, calibration=calibration, quantize="net")
        logits = python_logits(result.module)
        predictions = logits.argmax(1)
        np.save(logits_paths[precision], logits)
        np.save(predictions_paths[precision], predictions)
        report[precision] = {"archive": os.path.basename(paths[precision]),
                             "accuracy": float((predictions == labels).mean()),
                             "golden_report": result.precision_report}
    with open(report_path, "w") as f:
        json.dump(report, f, indent=2)
    with open(key_path, "w") as f:
        f.write(archive_key())
    print(f"wrote {', '.join(list(paths.values()) + [r['archive'] for r in report.values()])}")
    print_accuracy(report)
    return paths["fp32"]


def print_accuracy(report) -> None:
    fp32 = report["fp32"]["accuracy"]
    for precision, entry in report.items():
        change = "" if precision == "fp32" else \
            f" ({100 * (entry['accuracy'] - fp32):+.2f} points)"
        name = "fp32, AOTInductor" if precision == "aoti" else precision
        print(f"  {name}: test accuracy in Python {entry['accuracy']:.2%}{change}")


def write_testset(out_dir: str) -> None:
    folder = os.path.join(out_dir, "fashion_mnist_test")
    images, labels = data.load("test")
    if os.path.exists(os.path.join(folder, "truth.csv")):
        return
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    lines = ["path,label"]
    for index, (image, label) in enumerate(zip(images, labels)):
        name = f"{index:05d}.png"
        cv2.imwrite(os.path.join(folder, name), image)
        lines.append(f"{name},{data.CLASSES[label]}")
    with open(os.path.join(folder, "truth.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(images)} test images and truth.csv to {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--testset", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    export(args.out_dir)
    if args.testset:
        write_testset(args.out_dir)


if __name__ == "__main__":
    main()
