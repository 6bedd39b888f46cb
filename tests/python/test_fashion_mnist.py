"""The trained Fashion-MNIST model through the CLI: batch classification of a folder (JSON lines,
the summary, accuracy and confusion matrix), a bad image in a folder, any image size, and the
reduced-precision archives."""

import json
import os
import shutil
import time

import numpy as np
import torch

from conftest import assert_argmax_agrees, golden_rtol, rule_atol, stderr_lines
from torchship.torchscript.precision import bf16_convolution_problem

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def truth(models):
    with open(os.path.join(models, "fashion_mnist_test", "truth.csv")) as f:
        rows = [line.strip().split(",") for line in f.readlines()[1:]]
    return np.array([CLASSES.index(label) for _, label in rows])


def subset(models, tmp_path, count: int) -> str:
    """The first `count` test images in a folder of their own, with their truth.csv."""
    folder = tmp_path / "subset"
    folder.mkdir()
    source = os.path.join(models, "fashion_mnist_test")
    with open(os.path.join(source, "truth.csv")) as f:
        rows = f.readlines()
    (folder / "truth.csv").write_text("".join(rows[:count + 1]))
    for i in range(count):
        shutil.copy(os.path.join(source, f"{i:05d}.png"), folder / f"{i:05d}.png")
    return str(folder)


def test_batch_classification_streams_json_lines_and_summarizes(run, models, tmp_path, report):
    """The CLI contract of a batch run (the library's parity on all 10,000 test images, in fp32,
    bf16 and int8, is tests/cpp TrainedModel's)."""
    count = 600  # two full batches of 256 and a partial one
    folder = subset(models, tmp_path, count)
    started = time.time()
    result = run("classify", os.path.join(models, "fashion_mnist.pt"), folder, "--batch-size",
                 "256", "--top-k", "3", "--jsonl", "--labels", os.path.join(folder, "truth.csv"))
    seconds = time.time() - started
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [os.path.basename(r["path"]) for r in lines] == [f"{i:05d}.png" for i in range(count)]
    first = lines[0]
    assert set(first) >= {"path", "index", "label", "score", "topk"}
    assert first["label"] == CLASSES[first["index"]] and len(first["topk"]) == 3

    cpp = np.array([r["index"] for r in lines])
    logits = np.load(os.path.join(models, "fashion_mnist_python_logits.npy"))[:count]
    rtol = golden_rtol(os.path.join(models, "fashion_mnist.pt"))
    assert_argmax_agrees(logits, logits.argmax(1), cpp, 1, rule_atol(logits, rtol))
    labels = truth(models)[:count]
    correct = int((cpp == labels).sum())

    summary = stderr_lines(result)
    assert summary[0].startswith(f"{count} images in ")
    assert summary[1] == f"accuracy {correct / count:.2%} ({correct} of {count} labelled images)"
    assert summary[2] == "confusion matrix (rows: truth, columns: predicted)"
    row = summary[4].split()  # class 0: its count per predicted class
    assert [int(n) for n in row[-10:]] == [int(((labels == 0) & (cpp == k)).sum())
                                           for k in range(10)]
    report(f"Fashion-MNIST CLI, {count} images in batches of 256: {seconds:.1f} s, "
           f"accuracy {correct / count:.2%}")


def test_summary_json_and_a_bad_image_in_a_folder(run, models, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    source = os.path.join(models, "fashion_mnist_test")
    for name in ("00000.png", "00001.png", "00002.png"):
        with open(os.path.join(source, name), "rb") as f:
            (folder / name).write_bytes(f.read())
    (folder / "00001b.png").write_text("not a png")
    (folder / "notes.txt").write_text("not an image")
    result = run("classify", os.path.join(models, "fashion_mnist.pt"), str(folder),
                 "--batch-size", "2", "--json")
    assert result.returncode == 2  # one image failed; the others were classified
    errors = stderr_lines(result)
    assert f"torchship: warning: skipping {folder / 'notes.txt'}: not an image file" in errors
    assert any(line.startswith(f"torchship: error: {folder / '00001b.png'} is not an image")
               for line in errors)
    out = json.loads(result.stdout)
    assert [os.path.basename(r["path"]) for r in out["results"]] == [
        "00000.png", "00001.png", "00002.png"]
    python = np.load(os.path.join(models, "fashion_mnist_python_predictions.npy"))
    assert [r["index"] for r in out["results"]] == python[:3].tolist()
    assert out["summary"]["images"] == 3 and out["summary"]["failed"] == 1


def test_any_size_grayscale_or_colour_image_is_resized_by_the_manifest(run, models, fixtures):
    # The manifest says grey, 28 x 28, area interpolation: cv2 doing that to the 451 x 300 colour
    # photo, then the model in Python, is the reference. The CLI may decode a large image at a
    # reduced size first (OpenCV's IMREAD_REDUCED), so its pixels differ by a grey level or two:
    # the label must agree (Python's margin between its two best is 0.16) and the score within
    # 0.03 (0.005 measured).
    import cv2
    photo = cv2.imread(os.path.join(fixtures, "chelsea.png"))
    grey = cv2.resize(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY), (28, 28),
                      interpolation=cv2.INTER_AREA)
    model = torch.jit.load(os.path.join(models, "fashion_mnist.pt"))
    with torch.no_grad():
        scores = model(torch.from_numpy(grey).reshape(1, 28, 28, 1)).softmax(-1)[0]
    out = run.json("classify", os.path.join(models, "fashion_mnist.pt"), "chelsea.png", "--json")
    assert out["results"][0]["label"] == CLASSES[int(scores.argmax())]
    assert abs(out["results"][0]["score"] - float(scores.max())) < 0.03


def test_reduced_precision_archives_say_so_and_keep_their_accuracy(run, models, report):
    """bf16 and int8 exports of the same weights: the manifest carries the precision and the
    report against fp32; Python measured their accuracy on the 10,000 test images at export
    (fashion_mnist_accuracy.json), within the targets (bf16 <= 0.2 points, int8 <= 0.5 points).
    C++ parity on all 10,000 images: tests/cpp TrainedModel."""
    with open(os.path.join(models, "fashion_mnist_accuracy.json")) as f:
        measured = json.load(f)
    fp32 = measured["fp32"]["accuracy"]
    lines = []
    for precision, limit in (("bf16", 0.002), ("int8", 0.005)):
        if precision not in measured:  # torch 1.13 without AVX-512 has no bf16 convolution
            assert bf16_convolution_problem() is not None
            lines.append("bf16 not exported (no bf16 convolution on this CPU)")
            continue
        archive = os.path.join(models, f"fashion_mnist_{precision}.pt")
        info = run.json("info", archive, "--json")
        assert info["manifest"]["precision"] == precision
        golden_report = info["manifest"]["export"]["precision_report"]
        assert golden_report["reference"] == "fp32 eager module"
        assert 0 < golden_report["max_abs_error"]["output"] < 2.0
        assert golden_report["top1_agreement"] == 1.0  # on the 9 golden images
        accuracy = measured[precision]["accuracy"]
        assert fp32 - accuracy <= limit, f"{precision} loses {100 * (fp32 - accuracy):.2f} points"
        lines.append(f"{precision} {accuracy:.2%} ({100 * (accuracy - fp32):+.2f} points)")
    report("Fashion-MNIST reduced precision (Python, 10000 test images): fp32 "
           f"{fp32:.2%}, " + ", ".join(lines))
