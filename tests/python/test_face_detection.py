"""A real face detector exported whole: facenet-pytorch's pretrained MTCNN (pyramid, three
networks, NMS, crops) rewritten as torch code (examples/face_detection), exported as TorchScript
and as an AOTInductor package. C++ (`torchship detect`, the server's /detect) finds the faces
facenet-pytorch's own MTCNN.detect finds in scikit-image's photos."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.server_process import Server, make_repository

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(ROOT, "examples", "face_detection")
PHOTOS = "/usr/lib/python3/dist-packages/skimage/data"

pytest.importorskip("facenet_pytorch",
                    reason="MTCNN's weights come from PyPI (scripts/setup-python.sh)")
sys.path.insert(0, EXAMPLE)
import export as face_export  # noqa: E402
from mtcnn_pipeline import pretrained_face_detector  # noqa: E402

# astronaut.png holds one face, camera.png (grey) one, coffee.png none.
PHOTO_NAMES = ["astronaut.png", "camera.png", "coffee.png"]
FACES = {"astronaut.png": 1, "camera.png": 1, "coffee.png": 0}
SIZES = {"astronaut.png": (512, 512), "camera.png": (512, 512), "coffee.png": (400, 600)}
# What the issue asks: boxes and landmarks within a pixel, probabilities within 1e-4. The
# rewrite's crops are matrix products instead of adaptive pooling (sums in another order, about
# 1e-5 of a pixel value) and another CPU's kernels round differently: measured differences are
# below 1e-4 pixels and 1e-6 in probability.
PIXEL_ATOL = 1.0
SCORE_ATOL = 1e-4


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("faces"))
    formats = ["torchscript"] + (["aoti"] if face_export.aoti_available() else [])
    return face_export.export(out, formats)


@pytest.fixture(scope="module")
def reference():
    return {name: face_export.reference(os.path.join(PHOTOS, name)) for name in PHOTO_NAMES}


def assert_same_faces(found, expected, where):
    """found: torchship's detections (JSON); expected: MTCNN.detect's answer."""
    assert len(found) == len(expected["boxes"]), where
    for detection, box, score, landmarks in zip(found, expected["boxes"], expected["scores"],
                                                expected["landmarks"]):
        assert np.abs(np.array(detection["box"]) - np.array(box)).max() <= PIXEL_ATOL, where
        assert abs(detection["score"] - score) <= SCORE_ATOL, where
        points = np.array([[p["x"], p["y"]] for p in detection["keypoints"]])
        assert np.abs(points - np.array(landmarks)).max() <= PIXEL_ATOL, where
        assert [p["name"] for p in detection["keypoints"]] == face_export.LANDMARKS
        assert detection["label"] == "face" and detection["index"] == 0


def test_the_rewrite_finds_what_mtcnn_finds_in_python(reference):
    detector = pretrained_face_detector()
    for name in PHOTO_NAMES:
        with torch.no_grad():
            boxes, scores, landmarks = detector(face_export.read_rgb(os.path.join(PHOTOS, name)))
        expected = reference[name]
        assert len(expected["boxes"]) == FACES[name] == len(boxes), name
        if FACES[name]:
            assert np.abs(boxes.numpy() - np.array(expected["boxes"])).max() <= 1e-3
            assert np.abs(scores.numpy() - np.array(expected["scores"])).max() <= 1e-6
            assert np.abs(landmarks.numpy() - np.array(expected["landmarks"])).max() <= 1e-3


def test_cpp_finds_the_same_faces_in_each_format(cli, archives, reference):
    assert len(archives) >= 1
    for archive in archives:
        paths = [os.path.join(PHOTOS, name) for name in PHOTO_NAMES]
        result = subprocess.run([cli, "detect", archive, *paths, "--json"], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["summary"]["objects"] == sum(FACES.values())
        for name, image in zip(PHOTO_NAMES, answer["results"]):
            assert (image["height"], image["width"]) == SIZES[name]
            assert_same_faces(image["detections"], reference[name], (archive, name))


def test_min_score_and_overlay(cli, archives, tmp_path):
    archive = archives[0]
    camera = os.path.join(PHOTOS, "camera.png")
    overlay = str(tmp_path / "camera_faces.png")
    import cv2
    # camera.png's face scores 0.9991: kept at 0.999, left out at 0.9995. The photo is grey:
    # colour appears only where a box, its caption and its points are drawn.
    for min_score, faces in [("0.999", 1), ("0.9995", 0)]:
        result = subprocess.run([cli, "detect", archive, camera, "--min-score", min_score,
                                 "--overlay", overlay, "--jsonl"], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        line = json.loads(result.stdout)
        assert len(line["detections"]) == faces and line["overlay"] == overlay
        drawn = cv2.imread(overlay)
        assert drawn.shape == (512, 512, 3)
        coloured = drawn.max(axis=2) != drawn.min(axis=2)
        assert coloured.any() == bool(faces), min_score
        if faces:
            # ... on the box's edges, and nowhere left of it, below it or far above it.
            x1, y1, x2, y2 = line["detections"][0]["box"]
            middle = int((y1 + y2) / 2)
            assert coloured[middle, round(x1)] and coloured[middle, round(x2)]
            rows, columns = np.nonzero(coloured)
            assert rows.min() >= y1 - 40 and rows.max() <= y2 + 2 and columns.min() >= x1 - 2


def test_the_server_detects_the_same_faces(cli, archives, reference, fixtures, tmp_path):
    models = {"faces": (archives[-1], None),
              "resnet": (os.path.join(fixtures, "classifier.pt"), None)}
    server = Server(cli, make_repository(str(tmp_path / "repository"), models))
    try:
        client = server.connect()
        for name in ["astronaut.png", "camera.png"]:
            with open(os.path.join(PHOTOS, name), "rb") as f:
                response = client.request("POST", "/v2/models/faces/detect", f.read())
            assert response.status == 200, response.body
            assert response.json()["model_name"] == "faces"
            assert_same_faces(response.json()["detections"], reference[name], name)
        with open(os.path.join(PHOTOS, "camera.png"), "rb") as f:
            photo = f.read()
        strict = client.request("POST", "/v2/models/faces/detect?min_score=0.9995", photo)
        assert (strict.status, strict.json()["detections"]) == (200, [])
        bad = client.request("POST", "/v2/models/faces/detect?min_score=high", photo)
        assert (bad.status, bad.json()) == (400, {"error": "min_score must be a number, got "
                                                           "\"high\""})
        classifier = client.request("POST", "/v2/models/resnet/detect", photo)
        assert (classifier.status, classifier.json()) == (
            400, {"error": "model 'resnet' is not a detector (its manifest task is "
                           "classification); use /infer"})
        empty = client.request("POST", "/v2/models/faces/detect", b"")
        assert (empty.status, empty.json()) == (
            400, {"error": "expected the image file as the request body (PNG, JPEG, ...), got "
                           "0 bytes"})
    finally:
        assert server.terminate() == 0
