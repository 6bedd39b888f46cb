"""The export side installed the way a researcher installs it: the wheel built from pyproject.toml,
installed into a fresh virtualenv, the article's classifier exported from there (not from the
checkout) and checked by the C++ CLI against its golden vectors."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SYSTEM_PYTHON = "/usr/bin/python3"


def run(command, **kwargs):
    # Without PYTHONPATH: a checkout's python/ there would hide the installed package.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env,
                          **kwargs)
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel, built by setuptools' PEP 517 backend from a copy of what pyproject.toml needs
    (no network, no build isolation)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "VERSION", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source)
    shutil.copytree(os.path.join(ROOT, "python"), source / "python",
                    ignore=shutil.ignore_patterns("__pycache__"))
    dist = source / "dist"
    name = run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                "print(build_meta.build_wheel(sys.argv[1]))", str(dist)], cwd=source)
    return dist / name.strip().splitlines()[-1]


def test_the_wheel_is_named_by_the_one_version(wheel):
    with open(os.path.join(ROOT, "VERSION")) as f:
        version = f.read().strip()
    assert wheel.name == f"torchship-{version}-py3-none-any.whl"


def test_the_wheel_installs_into_a_fresh_virtualenv_and_exports_the_article_classifier(
        wheel, cli, tmp_path):
    # The fresh virtualenv borrows torch from Debian's python3-torch (--system-site-packages):
    # reinstalling PyPI's 5.5 GB torch for one test is not worth its minutes. pip installs the
    # wheel with --no-index, so the declared dependencies must already be met there.
    if subprocess.run([SYSTEM_PYTHON, "-c", "import torch, torchvision"],
                      capture_output=True).returncode != 0:
        pytest.skip("needs Debian's python3-torch and python3-torchvision "
                    "(TORCHSHIP_TORCH=debian bash scripts/setup-deps.sh)")
    venv = tmp_path / "venv"
    run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)])
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--quiet", "--no-index", str(wheel)])

    where = run([python, "-c", "import torchship; print(torchship.__file__); "
                 "print(torchship.__version__)"], cwd=tmp_path).split()
    assert where[0].startswith(str(venv)), where
    assert where[1] == open(os.path.join(ROOT, "VERSION")).read().strip()
    usage = subprocess.run([str(venv / "bin" / "torchship-export")], capture_output=True,
                           text=True)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: ")

    # The article's export script, away from the checkout: its sys.path entry for python/
    # points nowhere, so `import torchship` finds the installed package.
    article = tmp_path / "examples" / "article"
    article.mkdir(parents=True)
    for name in ("export.py", "pipelines.py", "imagenet_labels.txt"):
        shutil.copy(os.path.join(ROOT, "examples", "article", name), article)
    out = tmp_path / "out"
    printed = run([python, str(article / "export.py"), str(out)], cwd=tmp_path)
    assert "wrote " + str(out / "classifier.pt") in printed
    check = subprocess.run([cli, "check", str(out / "classifier.pt")], capture_output=True,
                           text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
