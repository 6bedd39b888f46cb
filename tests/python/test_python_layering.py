"""The exporter's modules form layers: each imports only modules below it in LAYERS, at module
level and inside functions alike, so there is no import cycle, not even a deferred one. Read
with `ast`: no module is imported, and torch is not needed."""

import ast
import os
from typing import Dict, List, Set

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGE = os.path.join(ROOT, "python", "torchship")

# Bottom to top: a module may import only modules listed before it. "__init__" is the package
# itself (`from . import name` of a name that is no module imports it).
LAYERS = [
    "version",          # the release number
    "native",           # the C++ side installed with the wheel
    "errors",           # ExportError, Finding, ExportWarning, first_line
    "tolerance",        # the comparison rule
    "tree",             # values <-> JSON trees and .npy
    "manifest",         # the manifest's Python form
    "compat",           # what differs between torch versions (TorchScript's deprecation)
    "doctor",           # why TorchScript or torch.export rejected code
    "checks",           # the export checks and what becomes of their findings
    "submodules",       # submodules by dotted name, and the inputs they see
    "precision",        # bf16 and int8
    "options",          # ExportOptions
    "result",           # ExportResult
    "archive",          # the manifest's file and export section, the golden files
    "verification",     # exported model against Python on the golden cases
    "size_checks",      # the export run at other sizes of its dynamic dimensions
    "conversion",       # trace, script, hybrid
    "torchscript",      # the TorchScript writer, and load
    "cpu_targets",      # CPU targets and their features
    "inductor_setup",   # AOTInductor's options and the patches around it
    "input_structure",  # what torch.export fixes of the arguments
    "pt2_package",      # the .pt2 zip
    "dynamic_dims",     # dynamic sizes: asked, proved, compiled
    "static_batches",   # models compiled for a fixed batch size
    "aoti",             # the AOTInductor writer
    "export",           # torchship.export: validation and dispatch
    "__init__",         # the package's public names
    "__main__",         # python3 -m torchship
]


def _modules() -> List[str]:
    return sorted(name[:-3] for name in os.listdir(PACKAGE) if name.endswith(".py"))


def _imports(module: str) -> Set[str]:
    """The package's modules that `module` imports, anywhere in its code."""
    modules = set(_modules())
    with open(os.path.join(PACKAGE, module + ".py")) as f:
        tree = ast.parse(f.read(), module + ".py")
    found: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "torchship":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "torchship":
                    continue
                inside = parts[1:]
            else:
                assert node.level == 1, f"{module}: import from outside the package"
                inside = node.module.split(".") if node.module else []
            if inside:
                found.add(inside[0])
            else:  # from . import a, b: modules, or names of the package itself
                for alias in node.names:
                    found.add(alias.name if alias.name in modules else "__init__")
    found.discard(module)
    return found


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
