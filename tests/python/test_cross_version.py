"""Archives across torch versions: each build's CLI checks the golden vectors of the archives
the other stack's torch exported. `scripts/test.sh all` builds both stacks (PyPI's torch 2.x
and Debian's 1.13) and runs this with TORCHSHIP_CROSS_BUILDS="build build-debian".

- An archive from the older torch runs on the newer build and reproduces its golden vectors.
- An archive from the newer torch runs on the older build with its golden vectors, or is refused
  in one line that names both versions (newer_ops.pt calls an operator 1.13 lacks).
- An AOTInductor package (.pt2) is refused in one line by a build without AOTInductor, and an
  OpenVINO archive by a build without OpenVINO.
"""

import json
import os
import re
import subprocess
from typing import Tuple

import pytest

from conftest import ROOT

BUILDS = [os.path.join(ROOT, b) for b in os.environ.get("TORCHSHIP_CROSS_BUILDS", "").split()]
pytestmark = pytest.mark.skipif(len(BUILDS) != 2,
                                reason="needs both stacks built: scripts/test.sh all")

ARCHIVES = ["fixtures/classifier.pt", "fixtures/segmentation.pt", "fixtures/detection.pt",
            "fixtures/generic.pt", "models/fashion_mnist.pt", "models/fashion_mnist_bf16.pt",
            "models/fashion_mnist_int8.pt"]
OPTIONAL_ARCHIVE = "models/fashion_mnist_bf16.pt"


def cli(build: str) -> str:
    return os.path.join(build, "bin", "torchship")


def libtorch_of(build: str) -> Tuple[str, Tuple[int, ...]]:
    line = subprocess.run([cli(build), "--version"], capture_output=True, text=True,
                          check=True).stdout
    version = re.search(r"libtorch (\d+\.\d+\.\d+)", line).group(1)
    return version, tuple(int(part) for part in version.split("."))


def backends_of(build: str) -> str:
    """The backends line of a build's --version ("backends: TorchScript, AOTInductor, ...")."""
    out = subprocess.run([cli(build), "--version"], capture_output=True, text=True,
                         check=True).stdout
    return next(line for line in out.splitlines() if line.startswith("backends: "))


def exported_by(build: str) -> str:
    """The torch that made a build's fixtures, as the archives' manifests record it."""
    out = subprocess.run([cli(build), "info", os.path.join(build, "fixtures", "classifier.pt"),
                          "--json"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["manifest"]["export"]["torch_version"]


@pytest.mark.parametrize("runner,exporter", [(0, 1), (1, 0)], ids=["first-runs-second",
                                                                  "second-runs-first"])
def test_golden_vectors_hold_or_the_refusal_names_both_versions(runner, exporter, report):
    run_build, export_build = BUILDS[runner], BUILDS[exporter]
    here, here_key = libtorch_of(run_build)
    there = exported_by(export_build)
    there_key = tuple(int(p) for p in re.match(r"(\d+)\.(\d+)\.(\d+)", there).groups())
    passed, refused = [], []
    for name in ARCHIVES:
        archive = os.path.join(export_build, name)
        if not os.path.exists(archive):
            # Only the bf16 archive may be missing: the exporting CPU had no bf16 kernel.
            assert name == OPTIONAL_ARCHIVE, f"{archive} is missing: the build's fixtures are"
            continue
        result = subprocess.run([cli(run_build), "check", archive], capture_output=True,
                                text=True, timeout=600)
        if result.returncode == 0:
            verdict = result.stdout.splitlines()[-1]
            assert re.fullmatch(r"PASS: [1-9]\d* golden cases?, .*", verdict), result.stdout
            passed.append(os.path.basename(name))
            continue
        # Only a newer torch's archive may be refused, in one line naming both versions.
        assert there_key > here_key, f"{name} from torch {there} fails on libtorch {here}:\n" \
                                     f"{result.stdout}{result.stderr}"
        lines = [l for l in result.stderr.splitlines() if not l.startswith("libpng warning")]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert there in lines[0] and here in lines[0], lines[0]
        refused.append(os.path.basename(name))
    newer_ops = os.path.join(export_build, "fixtures", "newer_ops.pt")
    if os.path.exists(newer_ops) and there_key > here_key:
        result = subprocess.run([cli(run_build), "check", newer_ops], capture_output=True,
                                text=True)
        assert result.returncode == 2
        assert result.stderr == (
            f"torchship: error: cannot load {newer_ops}: the model calls operator "
            f"aten::scaled_dot_product_attention, which this libtorch ({here}) does not have; "
            f"the archive was exported with torch {there}; run it with a torchship built "
            f"against libtorch {there}, or export it again with torch {here}\n")
        refused.append("newer_ops.pt")
    package = os.path.join(export_build, "fixtures", "classifier.pt2")
    if os.path.exists(package):
        # An AOTInductor package on a build without AOTInductor (libtorch < 2.6): one line.
        result = subprocess.run([cli(run_build), "check", package], capture_output=True,
                                text=True)
        if here_key >= (2, 6):
            assert result.returncode == 0, result.stderr
            passed.append("classifier.pt2")
        else:
            assert result.returncode == 2 and result.stdout == ""
            assert result.stderr == (
                f"torchship: error: cannot load {package}: it is an AOTInductor package (.pt2), "
                f"and this torchship was built against libtorch {here}, which has no AOTInductor "
                "runtime (2.6 or newer has); run it with a torchship built against PyTorch 2.x, "
                "or export the model as TorchScript\n")
            refused.append("classifier.pt2")
    openvino = os.path.join(export_build, "fixtures", "tiny.ov")
    if os.path.exists(openvino):
        result = subprocess.run([cli(run_build), "check", openvino], capture_output=True,
                                text=True)
        if "OpenVINO" in backends_of(run_build):
            assert result.returncode == 0, result.stderr
            passed.append("tiny.ov")
        else:
            assert result.returncode == 2 and result.stdout == ""
            assert result.stderr.startswith(
                f"torchship: error: cannot load {openvino}: it is an OpenVINO archive, and this "
                "torchship was built without OpenVINO (") and result.stderr.count("\n") == 1
            refused.append("tiny.ov")
    # A direction where every archive is refused would pass the checks above: the older torch's
    # archives must run on the newer build, and the newer's TorchScript classifier (no operator
    # that 1.13 lacks) on the older one.
    assert "classifier.pt" in passed, f"libtorch {here} reproduced none of torch {there}'s " \
                                      f"classifier.pt: passed {passed}, refused {refused}"
    report(f"archives of torch {there} on libtorch {here}: golden vectors reproduced by "
           f"{', '.join(passed) or 'none'}; refused in one line: {', '.join(refused) or 'none'}")
