"""`python -m bench NAME`, the benchmarks' one entry point: it names every module of bench/ that
has a main(argv), and refuses an unknown name in one line (exit 2)."""

import ast
import importlib
import os
import subprocess
import sys

from conftest import ROOT

entry = importlib.import_module("bench.__main__")


def modules_with_main():
    found = set()
    folder = os.path.join(ROOT, "bench")
    for name in os.listdir(folder):
        if name.endswith(".py") and not name.startswith("__"):
            with open(os.path.join(folder, name)) as f:
                tree = ast.parse(f.read(), name)
            if any(isinstance(node, ast.FunctionDef) and node.name == "main"
                   for node in tree.body):
                found.add(name[:-3])
    return found


def run_bench(*args):
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_every_module_with_a_main_has_a_name_and_every_name_a_module():
    assert set(entry.NAMES) == modules_with_main()


def test_help_lists_every_name():
    result = run_bench("--help")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert listed == set(entry.NAMES)


def test_an_unknown_name_is_one_line_and_exit_2():
    result = run_bench("zoo.py", "--models", "resnet50")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "bench: unknown name 'zoo.py': expected one of " + ", ".join(entry.NAMES)]
