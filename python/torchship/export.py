"""torchship.export: turn a PyTorch pipeline into one self-describing TorchScript archive."""

import copy
import datetime
import json
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from . import __version__
from .manifest import Manifest
from .tree import max_difference, npy_bytes, to_tree

METHODS = ("trace", "script", "hybrid")
MANIFEST_FILE = "torchship.json"
GOLDEN_INDEX = "torchship/golden/index.json"
GOLDEN_PREFIX = "torchship/golden/"


class ExportError(RuntimeError):
    """The pipeline could not be exported, or the export does not compute what Python does."""


class ExportResult:
    def __init__(self, path: str, module: torch.jit.ScriptModule, manifest: Dict[str, Any],
                 max_errors: Dict[str, float]):
        self.path = path
        self.module = module
        self.manifest = manifest
        self.max_errors = max_errors  # per output leaf, exported vs eager, on every golden case

    def __repr__(self) -> str:
        worst = max(self.max_errors.values(), default=0.0)
        return f"ExportResult({self.path!r}, method={self.manifest['export']['method']!r}, " \
               f"max_error={worst:.3g})"


def _as_args(example_inputs: Any) -> Tuple[Any, ...]:
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def _submodule(root: torch.nn.Module, dotted: str) -> Tuple[torch.nn.Module, str]:
    parent = root
    *path, leaf = dotted.split(".")
    for name in path:
        parent = getattr(parent, name)
    if not isinstance(getattr(parent, leaf, None), torch.nn.Module):
        raise ExportError(f"hybrid export: {type(root).__name__} has no submodule {dotted!r}")
    return parent, leaf


def _trace_submodules(module: torch.nn.Module, names: Sequence[str], args: Tuple[Any, ...]) -> None:
    """Replaces each named submodule by its trace, on the inputs it sees when `module` runs on
    `args` (captured by a forward pre-hook)."""
    captured: Dict[str, Tuple[Any, ...]] = {}
    hooks = []
    for name in names:
        parent, leaf = _submodule(module, name)
        sub = getattr(parent, leaf)

        def remember(_mod, inputs, name=name):
            captured.setdefault(name, inputs)

        hooks.append(sub.register_forward_pre_hook(remember))
    try:
        module(*args)
    finally:
        for hook in hooks:
            hook.remove()
    for name in names:
        if name not in captured:
            raise ExportError(f"hybrid export: submodule {name!r} never ran on the example inputs, "
                              "so it cannot be traced")
        parent, leaf = _submodule(module, name)
        traced = torch.jit.trace(getattr(parent, leaf), captured[name], check_trace=False)
        setattr(parent, leaf, traced)


def _convert(module: torch.nn.Module, args: Tuple[Any, ...], method: str,
             trace: Optional[Sequence[str]]) -> torch.jit.ScriptModule:
    if method == "trace":
        return torch.jit.trace(module, args, check_trace=False, strict=False)
    if method == "script":
        return torch.jit.script(module)
    if not trace:
        raise ExportError("hybrid export needs trace=[...]: the submodules to trace "
                          "(the rest of the module is scripted)")
    module = copy.deepcopy(module)  # tracing replaces submodules: leave the caller's intact
    _trace_submodules(module, trace, args)
    return torch.jit.script(module)


def _golden_files(cases: List[Tuple[Tuple[Any, ...], Any]], rtol: float,
                  atol: float) -> Dict[str, bytes]:
    files: Dict[str, bytes] = {}
    index_cases = []
    for number, (inputs, output) in enumerate(cases):
        counter = [0]

        def store(tensor: torch.Tensor, number=number, counter=counter) -> str:
            name = f"{GOLDEN_PREFIX}{number}/{counter[0]}.npy"
            counter[0] += 1
            files[name] = npy_bytes(tensor)
            return name

        index_cases.append({"inputs": [to_tree(value, store) for value in inputs],
                            "output": to_tree(output, store)})
    files[GOLDEN_INDEX] = json.dumps({"rtol": rtol, "atol": atol, "cases": index_cases}).encode()
    return files


def export(module: torch.nn.Module, example_inputs: Any, path: str, *,
           method: str = "trace", manifest: Optional[Manifest] = None,
           trace: Optional[Sequence[str]] = None, golden_inputs: Sequence[Any] = (),
           rtol: float = 1e-4, atol: float = 1e-4) -> ExportResult:
    """Exports `module` to the archive `path`.

    example_inputs: forward's arguments (a tuple, or one value); they drive tracing and become
      the first golden case. golden_inputs: further argument tuples recorded as golden cases.
    method: "trace", "script", or "hybrid" (script the module, trace the submodules named in
      `trace` on the inputs they receive).
    The module is switched to eval mode and exported under no_grad; the export is rerun on every
    golden case and compared with the eager module (max abs diff <= atol + rtol * |expected|),
    and ExportError is raised when they differ.
    """
    if method not in METHODS:
        raise ExportError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    manifest = manifest or Manifest()
    module.eval()
    cases_inputs = [_as_args(example_inputs)] + [_as_args(extra) for extra in golden_inputs]

    with torch.no_grad():
        expected = [module(*args) for args in cases_inputs]
        exported = _convert(module, cases_inputs[0], method, trace)
        exported.eval()
        actual = [exported(*args) for args in cases_inputs]

    max_errors: Dict[str, float] = {}
    for number, (want, got) in enumerate(zip(expected, actual)):
        try:
            errors = max_difference(want, got)
        except ValueError as error:
            raise ExportError(f"golden case {number}: the exported module returns another "
                              f"structure than the Python module: {error}") from None
        for leaf, error in errors.items():
            max_errors[leaf] = max(max_errors.get(leaf, 0.0), error)
        _check_close(want, got, rtol, atol, f"golden case {number}")

    export_info = {
        "method": method,
        "torch_version": torch.__version__,
        "torchship_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    manifest_dict = manifest.to_dict(export_info)
    extra_files = {MANIFEST_FILE: json.dumps(manifest_dict, indent=2).encode()}
    extra_files.update(_golden_files(list(zip(cases_inputs, actual)), rtol, atol))
    torch.jit.save(exported, path, _extra_files=extra_files)
    return ExportResult(path, exported, manifest_dict, max_errors)


def _check_close(expected: Any, actual: Any, rtol: float, atol: float, where: str) -> None:
    if isinstance(expected, torch.Tensor):
        if expected.is_floating_point():
            ok = torch.allclose(actual.double(), expected.double(), rtol=rtol, atol=atol,
                                equal_nan=True)
        else:
            ok = torch.equal(actual, expected)
        if not ok:
            raise ExportError(f"{where}: the exported module computes other values than the "
                              "Python module (a traced branch or device may be frozen; try "
                              "method='script' or 'hybrid')")
    elif isinstance(expected, (list, tuple)):
        for e, a in zip(expected, actual):
            _check_close(e, a, rtol, atol, where)
    elif isinstance(expected, dict):
        actual_by_name = {str(k): v for k, v in actual.items()}
        for key, value in expected.items():
            _check_close(value, actual_by_name[str(key)], rtol, atol, where)


def load(path: str, map_location: Union[str, torch.device] = "cpu"):
    """Loads an archive in Python: (module, manifest dict or None)."""
    extra = {MANIFEST_FILE: ""}
    module = torch.jit.load(path, map_location=map_location, _extra_files=extra)
    manifest = json.loads(extra[MANIFEST_FILE]) if extra[MANIFEST_FILE] else None
    return module, manifest
