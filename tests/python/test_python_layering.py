"""The exporter's modules form layers: each imports only modules below it in LAYERS, at module
level and inside functions alike, so there is no import cycle, not even a deferred one. Above the
shared modules sits one subpackage per format (FORMATS); no format imports from another, and no
shared module imports a format (the dispatcher, export, names them all). Read with `ast`: no
module is imported, and torch is not needed."""

import ast
import os
from typing import Dict, List, Optional, Set

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
    # TorchScript: trace, script, hybrid; bf16 and int8
    "torchscript.compat",       # what differs between torch versions (the deprecation)
    "torchscript.submodules",   # submodules by dotted name, and the inputs they see
    "torchscript.precision",    # bf16 and int8
    "torchscript.conversion",   # trace, script, hybrid
    "torchscript.writer",       # the TorchScript writer, and load
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
    "openvino.__init__",        # its validation and public names
    "every_form",       # format="auto": every form in one archive
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
