"""The trained Fashion-MNIST model end to end: C++ batch classification of the 10,000 test
images gives exactly Python's predictions, hence exactly Python's accuracy."""

import json
import os
import time

import numpy as np

from conftest import stderr_lines

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def truth(models):
    with open(os.path.join(models, "fashion_mnist_test", "truth.csv")) as f:
        rows = [line.strip().split(",") for line in f.readlines()[1:]]
    return np.array([CLASSES.index(label) for _, label in rows])


def test_cpp_batches_match_python_on_the_whole_test_set(run, models, report):
    folder = os.path.join(models, "fashion_mnist_test")
    started = time.time()
    result = run("classify", os.path.join(models, "fashion_mnist.pt"), folder, "--batch-size",
                 "256", "--top-k", "3", "--jsonl", "--labels", os.path.join(folder, "truth.csv"))
    seconds = time.time() - started
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 10000
    assert [os.path.basename(r["path"]) for r in lines] == [f"{i:05d}.png" for i in range(10000)]
    first = lines[0]
    assert set(first) >= {"path", "index", "label", "score", "topk"}
    assert first["label"] == CLASSES[first["index"]] and len(first["topk"]) == 3

    cpp = np.array([r["index"] for r in lines])
    python = np.load(os.path.join(models, "fashion_mnist_python_predictions.npy"))
    labels = truth(models)
    assert (cpp == python).all(), f"{int((cpp != python).sum())} predictions differ"
    cpp_accuracy, python_accuracy = (cpp == labels).mean(), (python == labels).mean()
    assert cpp_accuracy == python_accuracy
    assert cpp_accuracy >= 0.92

    summary = stderr_lines(result)
    assert summary[0].startswith("10000 images in ")
    assert summary[1] == f"accuracy {cpp_accuracy:.2%} ({int((cpp == labels).sum())} of 10000 " \
                         "labelled images)"
    assert summary[2] == "confusion matrix (rows: truth, columns: predicted)"
    report(f"Fashion-MNIST test set: C++ accuracy {cpp_accuracy:.2%} == Python accuracy "
           f"{python_accuracy:.2%}; 10000/10000 predictions identical; CLI wall time "
           f"{seconds:.1f} s ({summary[0]})")


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


def test_any_size_grayscale_or_colour_image_is_resized_by_the_manifest(run, models):
    out = run.json("classify", os.path.join(models, "fashion_mnist.pt"), "chelsea.png", "--json")
    assert out["results"][0]["label"] in CLASSES


def test_reduced_precision_archives_keep_accuracy_and_cpp_parity(run, models, report):
    """bf16 and int8 exports of the same weights: Python measured their test accuracy at export
    (fashion_mnist_accuracy.json); C++ reproduces each archive's predictions exactly, and the
    accuracy loss stays within the targets (bf16 <= 0.2 points, int8 <= 0.5 points)."""
    with open(os.path.join(models, "fashion_mnist_accuracy.json")) as f:
        measured = json.load(f)
    labels = truth(models)
    folder = os.path.join(models, "fashion_mnist_test")
    fp32 = measured["fp32"]["accuracy"]
    lines = []
    for precision, limit in (("bf16", 0.002), ("int8", 0.005)):
        archive = os.path.join(models, f"fashion_mnist_{precision}.pt")
        info = run.json("info", archive, "--json")
        assert info["manifest"]["precision"] == precision
        golden_report = info["manifest"]["export"]["precision_report"]
        assert golden_report["reference"] == "fp32 eager module"
        assert 0 < golden_report["max_abs_error"]["output"] < 2.0
        assert golden_report["top1_agreement"] == 1.0  # on the 9 golden images
        result = run("classify", archive, folder, "--batch-size", "256", "--jsonl", "--top-k", "1")
        assert result.returncode == 0, result.stderr
        cpp = np.array([json.loads(line)["index"] for line in result.stdout.splitlines()])
        python = np.load(os.path.join(models, f"fashion_mnist_{precision}_python_predictions.npy"))
        assert (cpp == python).all(), f"{precision}: {int((cpp != python).sum())} differ"
        accuracy = float((cpp == labels).mean())
        assert accuracy == measured[precision]["accuracy"]
        assert fp32 - accuracy <= limit, f"{precision} loses {100 * (fp32 - accuracy):.2f} points"
        lines.append(f"{precision} {accuracy:.2%} ({100 * (accuracy - fp32):+.2f} points)")
    report("Fashion-MNIST reduced precision, C++ == Python on 10000/10000: fp32 "
           f"{fp32:.2%}, " + ", ".join(lines))
