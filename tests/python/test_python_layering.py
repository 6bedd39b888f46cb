"""The exporter's modules form layers: each imports only modules below it in LAYERS, at module
level and inside functions alike, so there is no import cycle, not even a deferred one. Above the
shared modules sits one subpackage per format (FORMATS); no format imports from another, and no
shared module imports a format (the dispatcher, export, names them all). Read with `ast`: no
module is imported, and torch is not needed.

The checkout's other Python folders have a direction too (the last tests below): harness/
(`torchship serve` and a KServe v2 client) imports the standard library, numpy and cv2 only;
bench/ imports harness, torchship, its own modules and third-party packages, never tests/;
tests/ may import all of these. Neither bench nor harness edits sys.path."""

import ast
import os
import shutil
import sys
from typing import Callable, Dict, List, Optional, Set

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGE = os.path.join(ROOT, "python", "torchship")

FORMATS = ("torchscript", "aoti", "openvino")

# Bottom to top: a module may import only modules listed before it. A subpackage's modules are
# named "format.module"; "format.__init__" is the subpackage itself, "__init__" the package.
LAYERS = [
    "version",          # the release number
    "native",           # the C++ side installed with the wheel
    "errors",           # ExportError, Finding, ExportWarning, first_line
    "tolerance",        # the comparison rule
    "tree",             # values <-> JSON trees and .npy
    "manifest",         # the manifest's Python form
    "doctor",           # why TorchScript or torch.export rejected code
    "checks",           # the export checks and what becomes of their findings
    "options",          # ExportOptions
    "result",           # ExportResult
    "archive",          # the manifest's file and export section, the golden files
    "verification",     # exported model against Python on the golden cases
    "size_checks",      # the export run at other sizes of its dynamic dimensions
    "input_structure",  # what torch.export fixes of the arguments
    "dynamic_dims",     # dynamic sizes: asked and proved
    "program",          # torch.export of the pipeline, for the formats that start from it
    "static_batches",   # models for fixed batch sizes: which sizes, and the rule that keeps one
    "weights_index",    # the weights index every archive records, and its differences
    # TorchScript: trace, script, hybrid; bf16 and int8
    "torchscript.compat",       # what differs between torch versions (the deprecation)
    "torchscript.submodules",   # submodules by dotted name, and the inputs they see
    "torchscript.precision",    # bf16 and int8
    "torchscript.conversion",   # trace, script, hybrid
    "torchscript.writer",       # the TorchScript writer, and load
    "torchscript.weights",      # a weights update's proof on the archive's own module
    "torchscript.__init__",     # its validation and public names
    # AOTInductor: compiled .pt2 packages
    "aoti.cpu_targets",         # CPU targets and their features
    "aoti.inductor_setup",      # AOTInductor's options and the patches around it
    "aoti.pt2_package",         # the .pt2 zip, and the sizes its compiled code accepts
    "aoti.static_batches",      # models compiled for a fixed batch size
    "aoti.writer",              # the AOTInductor writer
    "aoti.__init__",            # its validation and public names
    # OpenVINO: IR converted from the exported program
    "openvino.ir_archive",      # the archive's layout
    "openvino.conversion",      # openvino.convert_model and its refusals
    "openvino.runner",          # the IR compiled and called like the module
    "openvino.writer",          # the OpenVINO writer
    "openvino.weights",         # a weights update's IR, the module converted again
    "openvino.__init__",        # its validation and public names
    "every_form",       # format="auto": every form in one archive
    "weights.base_archive",     # an archive exported before, read back for an update
    "weights.update",           # the weights update's writer, given each format's prover
    "weights.__init__",         # its public names
    "export",           # torchship.export: validation and dispatch
    "__init__",         # the package's public names
    "__main__",         # python3 -m torchship
]


def _modules() -> List[str]:
    found = []
    for folder, _, files in os.walk(PACKAGE):
        inside = os.path.relpath(folder, PACKAGE)
        for name in files:
            if name.endswith(".py"):
                found.append(name[:-3] if inside == "." else f"{inside}.{name[:-3]}")
    return sorted(found)


def _resolve(parts: List[str], modules: Set[str]) -> Optional[str]:
    """The package's module that a dotted path inside it names ("aoti" is aoti.__init__)."""
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in modules:
            return name
        if f"{name}.__init__" in modules:
            return f"{name}.__init__"
    return None


def _imports(module: str) -> Set[str]:
    """The package's modules that `module` imports, anywhere in its code."""
    modules = set(_modules())
    with open(os.path.join(PACKAGE, *module.split(".")) + ".py") as f:
        tree = ast.parse(f.read(), module + ".py")
    own_package = module.split(".")[:-1]
    found: Set[str] = set()
    for node in ast.walk(tree):
        targets: List[List[str]] = []
        if isinstance(node, ast.Import):
            targets = [alias.name.split(".")[1:] for alias in node.names
                       if alias.name.split(".")[0] == "torchship"]
            targets = [parts or ["__init__"] for parts in targets]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "torchship":
                    continue
                base = parts[1:]
            else:
                assert node.level <= len(own_package) + 1, f"{module}: import from outside"
                base = own_package[:len(own_package) - node.level + 1]
                base += node.module.split(".") if node.module else []
            named = [base + [alias.name] for alias in node.names]
            if node.module or node.level == 0:
                targets = [base]
            # from . import a, b (or from .aoti import writer): modules where they are modules
            targets += [parts for parts in named if _resolve(parts, modules) == ".".join(parts)
                        or _resolve(parts, modules) == ".".join(parts + ["__init__"])]
            if not targets:
                targets = [base or ["__init__"]]
        for parts in targets:
            resolved = _resolve(parts, modules)
            if resolved:
                found.add(resolved)
    found.discard(module)
    return found


def _format_of(module: str) -> Optional[str]:
    first = module.split(".")[0]
    return first if first in FORMATS and "." in module else None


def test_every_module_has_a_layer():
    assert sorted(LAYERS) == _modules()


def test_every_import_goes_down():
    upward: Dict[str, List[str]] = {}
    for module in _modules():
        level = LAYERS.index(module)
        above = sorted(name for name in _imports(module) if LAYERS.index(name) > level)
        if above:
            upward[module] = above
    assert upward == {}, f"modules importing from a layer above their own: {upward}"


def test_no_import_cycle():
    graph = {module: _imports(module) for module in _modules()}
    done: Set[str] = set()

    def visit(module: str, path: List[str]) -> None:
        assert module not in path, "import cycle: " + " -> ".join(path + [module])
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, path + [module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_no_format_imports_another():
    crossing = {module: sorted(name for name in _imports(module)
                               if _format_of(name) not in (None, _format_of(module)))
                for module in _modules() if _format_of(module)}
    assert {m: names for m, names in crossing.items() if names} == {}


def test_no_shared_module_imports_a_format():
    shared = [m for m in _modules() if _format_of(m) is None
              and m not in ("export", "__init__", "__main__")]
    importing = {module: sorted(name for name in _imports(module) if _format_of(name))
                 for module in shared}
    assert {m: names for m, names in importing.items() if names} == {}


def test_imports_are_read_across_subpackages():
    """The reading above sees imports into and out of the subpackages, so the two tests before
    this one cannot pass by seeing nothing."""
    assert "aoti.pt2_package" in _imports("aoti.writer")
    assert "archive" in _imports("openvino.writer")
    assert {"aoti.__init__", "openvino.__init__", "torchscript.__init__"} <= _imports("export")


# ---- bench/ and harness/ --------------------------------------------------------------------

# What each folder may import, beyond itself: harness the standard library and these; bench
# anything but tests/ (harness, torchship, numpy, torch, the peers...).
HARNESS_THIRD_PARTY = {"numpy", "cv2"}


def _top_level_imports(path: str) -> Set[str]:
    """The top-level names a file imports, anywhere in its code (a relative import is its own
    package's)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _python_files(folder: str) -> List[str]:
    return sorted(os.path.join(where, name) for where, _, files in os.walk(folder)
                  for name in files if name.endswith(".py"))


def _test_module_names(root: str) -> Set[str]:
    """tests/ as a package, and every module under it by its plain name: what a sys.path entry
    into tests/ makes importable (conftest, pitfall_cases, ...)."""
    return {"tests"} | {os.path.basename(path)[:-3]
                        for path in _python_files(os.path.join(root, "tests"))}


def _forbidden_imports(root: str, folder: str,
                       forbidden: Callable[[str], bool]) -> Dict[str, List[str]]:
    """{file: the names it imports that `forbidden` refuses}, for every file under root/folder."""
    found = {}
    for path in _python_files(os.path.join(root, folder)):
        names = sorted(name for name in _top_level_imports(path) if forbidden(name))
        if names:
            found[os.path.relpath(path, root)] = names
    return found


def _path_edits(root: str) -> List[str]:
    """file:line of every use of sys.path in bench/ and harness/."""
    found = []
    for folder in ("bench", "harness"):
        for path in _python_files(os.path.join(root, folder)):
            with open(path) as f:
                tree = ast.parse(f.read(), path)
            found += [f"{os.path.relpath(path, root)}:{node.lineno}" for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and node.attr == "path"
                      and isinstance(node.value, ast.Name) and node.value.id == "sys"]
    return found


def _harness_refuses(name: str) -> bool:
    return name not in sys.stdlib_module_names and name not in HARNESS_THIRD_PARTY \
        and name != "harness"


def _layering_of_bench_and_harness(root: str) -> Dict[str, object]:
    """Everything the rules above find wrong in the checkout at `root` (empty: none)."""
    tests = _test_module_names(root)
    found = {"harness": _forbidden_imports(root, "harness", _harness_refuses),
             "bench": _forbidden_imports(root, "bench", lambda name: name in tests),
             "sys.path": _path_edits(root)}
    return {rule: what for rule, what in found.items() if what}


needs_stdlib_names = pytest.mark.skipif(not hasattr(sys, "stdlib_module_names"),
                                        reason="sys.stdlib_module_names: Python >= 3.10")


@needs_stdlib_names
def test_bench_and_harness_import_only_what_their_layer_allows():
    assert _layering_of_bench_and_harness(ROOT) == {}


@needs_stdlib_names
def test_a_bench_or_harness_import_out_of_its_layer_is_named(tmp_path):
    """The check above on a copy with one violation of each rule, so that it cannot pass by
    seeing nothing."""
    def only_python(folder, names):
        return [n for n in names if not n.endswith(".py")
                and not os.path.isdir(os.path.join(folder, n))]
    for folder in ("bench", "harness", "tests"):
        shutil.copytree(os.path.join(ROOT, folder), tmp_path / folder, ignore=only_python)
    with open(tmp_path / "harness" / "kserve_client.py", "a") as f:
        f.write("\n\ndef late():\n    import torch\n    from bench import zoo\n")
    soak = tmp_path / "bench" / "soak.py"
    edit_line = len(soak.read_text().splitlines()) + 1
    with open(soak, "a") as f:
        f.write("sys.path.insert(0, 'tests/python')\nfrom conftest import BUILD\n"
                "from tests.python import pitfall_cases\n")
    assert _layering_of_bench_and_harness(str(tmp_path)) == {
        "harness": {"harness/kserve_client.py": ["bench", "torch"]},
        "bench": {"bench/soak.py": ["conftest", "tests"]},
        "sys.path": [f"bench/soak.py:{edit_line}"]}
