"""Shared pytest fixtures: the fixture folder (built on demand), the CLI, reference outputs."""

import json
import os
import subprocess
import sys
from typing import List

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("TORCHSHIP_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "python"))


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
