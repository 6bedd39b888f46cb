"""Shared pytest fixtures: the fixture folder (built on demand), the CLI, reference outputs."""

import json
import os
import re
import subprocess
import sys
import zipfile
from typing import List, Tuple

import numpy as np
import pytest
import torch

# torchship (python/) and the harness (the checkout's root) are on the path by pyproject.toml's
# [tool.pytest.ini_options] pythonpath.
from harness.fashion_data import fashion_images
from torchship.archive import GOLDEN_INDEX
from torchship.tolerance import scaled_atol

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("TORCHSHIP_BUILD", os.path.join(ROOT, "build"))


def pytest_configure(config):
    # Tests call torch.jit themselves (scripting pitfall cases, loading archives): on torch 2.10+
    # each call warns that TorchScript is deprecated, which export reports once (test_export).
    config.addinivalue_line("filterwarnings",
                            r"ignore:`torch\.jit\.\w+` is deprecated:FutureWarning")


@pytest.fixture(scope="session")
def fixtures() -> str:
    folder = os.environ.get("TORCHSHIP_FIXTURES", os.path.join(BUILD, "fixtures"))
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "fixtures", "make_fixtures.py"),
                    folder], check=True, stdout=subprocess.DEVNULL)
    return folder


@pytest.fixture(scope="session")
def cli() -> str:
    path = os.environ.get("TORCHSHIP_CLI", os.path.join(BUILD, "bin", "torchship"))
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: build first (scripts/test.sh does)")
    # The fixtures come from this interpreter's torch: the CLI must run on the same release.
    line = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    release = re.match(r"\d+\.\d+\.\d+", torch.__version__).group(0)  # "1.13.0a0", "2.14.1+cu130"
    if f"libtorch {release}" not in line:
        pytest.fail(f"{path} says '{line.strip()}', but these tests run on torch "
                    f"{torch.__version__}: pick the stack with TORCHSHIP_TORCH (scripts/env.sh)")
    return path


class Cli:
    def __init__(self, binary: str, folder: str):
        self.binary = binary
        self.folder = folder

    def __call__(self, *args: str, env=None) -> subprocess.CompletedProcess:
        full_env = dict(os.environ)
        full_env.update(env or {})
        return subprocess.run([self.binary, *args], cwd=self.folder, capture_output=True,
                              text=True, timeout=300, env=full_env)

    def json(self, *args: str) -> dict:
        result = self(*args)
        assert result.returncode == 0, result.stderr
        return self._one_object(result)

    def loaded_mb(self, archive: str, *args: str) -> float:
        """The RSS of `torchship bench` once the model is ready (loaded, warm, what that freed
        given back): the memory tests' one reading."""
        out = self.json("bench", archive, "--runs", "2", "--json", *args)
        assert out["rss_released_mb"] > 0 and out["rss_mb"] > 0
        return out["rss_loaded_mb"]

    def json_any_code(self, *args: str) -> dict:
        return self._one_object(self(*args))

    @staticmethod
    def _one_object(result: subprocess.CompletedProcess) -> dict:
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, "--json must print exactly one line"
        return json.loads(lines[0])


@pytest.fixture(scope="session")
def run(cli, fixtures) -> Cli:
    """Runs the CLI inside the fixture folder, so archives and images go by file name."""
    return Cli(cli, fixtures)


def golden_rtol(archive: str) -> float:
    """The rtol an archive's golden vectors were recorded with (<root>/extra/torchship/golden/ in
    a .pt, <root>/torchship/golden/ in a .pt2)."""
    with zipfile.ZipFile(archive) as z:
        name = next(n for n in z.namelist() if n.endswith("/" + GOLDEN_INDEX))
        return json.loads(z.read(name))["rtol"]


def rule_atol(expected: np.ndarray, rtol: float) -> float:
    """torchship.tolerance's default atol for this output's scale."""
    return scaled_atol(rtol, torch.from_numpy(np.ascontiguousarray(expected)))


def assert_close(expected: np.ndarray, actual: np.ndarray, rtol: float) -> None:
    """torchship's one comparison rule (python/torchship/tolerance.py): floats within
    atol + rtol * |expected| with the scaled atol (equal infinities and NaN for NaN pass),
    everything else exactly."""
    assert expected.shape == actual.shape and expected.dtype == actual.dtype, \
        f"{actual.dtype} {actual.shape}, expected {expected.dtype} {expected.shape}"
    if not np.issubdtype(expected.dtype, np.floating):
        assert np.array_equal(expected, actual)
        return
    atol = rule_atol(expected, rtol)
    close = np.isclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
    diff = np.abs(expected.astype(np.float64) - actual.astype(np.float64))
    assert close.all(), f"max abs diff {np.nanmax(diff):.3g}, atol {atol:.3g}, rtol {rtol}"


def decided(scores: np.ndarray, axis: int, atol: float) -> np.ndarray:
    """Where the best two scores along `axis` are more than 2 * atol apart: there, scores within
    atol of these pick the same class; elsewhere either class is a right answer."""
    best_two = -np.sort(-scores.astype(np.float64), axis=axis).take([0, 1], axis=axis)
    return (best_two.take(0, axis=axis) - best_two.take(1, axis=axis)) > 2 * atol


def assert_argmax_agrees(scores: np.ndarray, expected: np.ndarray, actual: np.ndarray,
                         axis: int, atol: float) -> None:
    """Classes computed from scores within `atol` of `scores` equal `expected` wherever they are
    decided."""
    assert expected.shape == actual.shape
    differ = int(((expected != actual) & decided(scores, axis, atol)).sum())
    assert differ == 0, f"{differ} decided positions got another class"


def tensor_from_tree(tree: dict) -> np.ndarray:
    dtypes = {"BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16,
              "INT32": np.int32, "INT64": np.int64, "FP16": np.float16, "FP32": np.float32,
              "FP64": np.float64}
    return np.asarray(tree["data"], dtype=dtypes[tree["datatype"]]).reshape(tree["shape"])


def stderr_lines(result: subprocess.CompletedProcess) -> List[str]:
    """stderr without libpng's notes about the colour profiles of some PNG files."""
    return [line for line in result.stderr.splitlines() if not line.startswith("libpng warning")]


@pytest.fixture(scope="session")
def models() -> str:
    """build/models with the trained Fashion-MNIST archive and its test set (trains once; the
    weights are cached in ~/.cache/torchship)."""
    folder = os.environ.get("TORCHSHIP_MODELS", os.path.join(BUILD, "models"))
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "fashion_mnist", "build.py"),
                    folder, "--testset"], check=True, stdout=subprocess.DEVNULL)
    return folder


def fashion_reference(models: str) -> Tuple[np.ndarray, np.ndarray]:
    """Test images 0..63 and Python's logits for them, through torch.jit.load of the archive
    the servers serve."""
    module = torch.jit.load(os.path.join(models, "fashion_mnist.pt")).eval()
    images = fashion_images(models, 0, 64)
    with torch.no_grad():
        return images, module(torch.from_numpy(images)).numpy()


_MEASURED: List[str] = []


@pytest.fixture
def report():
    """Lines a test wants in the run's output (the numbers it measured)."""
    return _MEASURED.append


def pytest_terminal_summary(terminalreporter):
    if _MEASURED:
        terminalreporter.section("measured")
        for line in _MEASURED:
            terminalreporter.write_line(line)
