"""torchship.export: turn a PyTorch pipeline into one self-describing TorchScript archive (or,
with format="aoti", an AOTInductor .pt2 package: torchship.aoti)."""

import copy
import datetime
import json
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from . import __version__
from .checks import IDS as CHECK_IDS
from .checks import (Finding, Findings, device_literals, frozen_branches,
                     trace_recording_warnings, train_mode)
from .compat import (deprecation_note, refusal_message, torchscript_deprecations_silenced,
                     torchscript_support)
from .doctor import diagnose
from .manifest import Manifest
from .precision import PRECISIONS, Bfloat16, bf16_convolution_problem, quantize_int8
from .precision import report as precision_report
from .tolerance import DEFAULT_RTOL, scaled_atol
from .tree import first_mismatch, max_difference, npy_bytes, to_tree

METHODS = ("trace", "script", "hybrid")
FORMATS = ("torchscript", "aoti")
MANIFEST_FILE = "torchship.json"
GOLDEN_INDEX = "torchship/golden/index.json"
GOLDEN_PREFIX = "torchship/golden/"


class ExportError(RuntimeError):
    """The pipeline could not be exported, or the export does not compute what Python does."""

    def __init__(self, message: str, findings: Sequence[Finding] = ()):
        super().__init__(message)
        self.findings = list(findings)


class ExportResult:
    def __init__(self, path: str, module: torch.jit.ScriptModule, manifest: Dict[str, Any],
                 max_errors: Dict[str, float], findings: List[Finding], notes: List[str],
                 precision_report: Optional[Dict[str, Any]] = None):
        self.path = path
        self.module = module
        self.manifest = manifest
        self.max_errors = max_errors  # per output leaf, exported vs eager, on every golden case
        self.findings = findings  # every check's findings, allowed and notes included
        self.notes = notes  # what the exporter decided (e.g. hybrid fallbacks)
        # bf16/int8 only: the reduced module against the fp32 one on the golden cases
        self.precision_report = precision_report

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


def _capture_inputs(module: torch.nn.Module, names: Sequence[str],
                    args: Tuple[Any, ...]) -> Dict[str, Tuple[Any, ...]]:
    """The inputs each named submodule sees when `module` runs on `args`."""
    captured: Dict[str, Tuple[Any, ...]] = {}
    hooks = []
    for name in names:
        parent, leaf = _submodule(module, name)

        def remember(_mod, inputs, name=name):
            captured.setdefault(name, inputs)

        hooks.append(getattr(parent, leaf).register_forward_pre_hook(remember))
    try:
        with torch.no_grad():
            module(*args)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def _trace_submodules(module: torch.nn.Module, names: Sequence[str], args: Tuple[Any, ...],
                      findings: Findings) -> None:
    """Replaces each named submodule by its trace, on the inputs it sees when `module` runs on
    `args`."""
    captured = _capture_inputs(module, names, args)
    for name in names:
        if name not in captured:
            raise ExportError(f"hybrid export: submodule {name!r} never ran on the example inputs, "
                              "so it cannot be traced")
        parent, leaf = _submodule(module, name)
        sub = getattr(parent, leaf)
        traced, warned = trace_recording_warnings(
            lambda: torch.jit.trace(sub, captured[name], check_trace=False))
        for finding in warned:
            findings.add(finding)
        setattr(parent, leaf, traced)


def _script(module: torch.nn.Module) -> torch.jit.ScriptModule:
    try:
        return torch.jit.script(module)
    except Exception as error:
        raise ExportError(f"torch.jit.script cannot compile {type(module).__name__}:\n"
                          f"{diagnose(error)}") from error


def _children_that_do_not_script(module: torch.nn.Module) -> List[str]:
    """Direct children that do not script on their own: the ones hybrid export traces."""
    failing = []
    for name, child in module.named_children():
        if isinstance(child, torch.jit.ScriptModule):
            continue
        try:
            torch.jit.script(child)
        except Exception:
            failing.append(name)
    return failing


def _convert(module: torch.nn.Module, args: Tuple[Any, ...], method: str,
             trace: Optional[Sequence[str]], findings: Findings,
             notes: List[str]) -> torch.jit.ScriptModule:
    if method == "trace":
        traced, warned = trace_recording_warnings(
            lambda: torch.jit.trace(module, args, check_trace=False, strict=False))
        for finding in warned:
            findings.add(finding)
        return traced
    if method == "script":
        return _script(module)
    module = copy.deepcopy(module)  # tracing replaces submodules: leave the caller's intact
    if trace is None:
        # Script what scripts; trace the children that do not, then script the whole.
        try:
            return torch.jit.script(module)
        except Exception:
            trace = _children_that_do_not_script(module)
            if not trace:
                return _script(module)  # the wrapper itself fails: explain it
            notes.append("hybrid: scripting failed in submodule(s) " + ", ".join(trace) +
                         "; traced them and scripted the rest")
    _trace_submodules(module, trace, args, findings)
    return _script(module)


def _run_reduced(module: torch.nn.Module, cases_inputs: List[Tuple[Any, ...]],
                 precision: str) -> List[Any]:
    """The module's outputs on the golden inputs. A reduced-precision module that fails here
    fails for want of kernels (the fp32 one ran while it was calibrated or copied): say so."""
    try:
        return [module(*args) for args in cases_inputs]
    except RuntimeError as error:
        if precision == "fp32":
            raise
        why = str(error).strip().splitlines()[0]
        hint = ""
        if precision == "bf16" and bf16_convolution_problem():
            hint = ("; this torch has no bf16 convolution kernel for this CPU (torch 2.x has, "
                    "and so has 1.13 on CPUs with AVX-512)")
        raise ExportError(f"precision={precision!r}: torch {torch.__version__} cannot run the "
                          f"pipeline in {precision} on this CPU ({why}){hint}") from None


def _quantize_noting_deprecations(module: torch.nn.Module, target: str,
                                  calibration: Sequence[Any],
                                  notes: List[str]) -> torch.nn.Module:
    """quantize_int8, with torch's deprecation warnings about the API it uses (torch 2.14
    deprecates FX graph-mode quantization and quantized tensors) turned into one note."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantized = quantize_int8(module, target, [_as_args(c) for c in calibration])
    torch_folder = os.path.dirname(torch.__file__)
    deprecations = [w for w in caught if "deprecat" in str(w.message)
                    and os.path.abspath(w.filename).startswith(torch_folder)]
    for warning in caught:  # the pipeline's own warnings, as if not caught
        if warning not in deprecations:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    if deprecations:
        notes.append(f"int8: torch {torch.__version__} deprecates the quantization API this "
                     "export uses (FX graph-mode quantization, quantized tensors) and still runs "
                     "it; its successor is torchao's pt2e quantization")
    return quantized


def _accept_quantization_constants(findings: Findings, notes: List[str]) -> None:
    """Quantized operators turn their calibrated scale and zero point (tensors) into Python
    numbers while tracing, which the tracer flags; they are constants after calibration, so
    those warnings are expected and become a note."""
    quantization = [f for f in findings.items if f.id == "tracer-warning"
                    and "torch/_ops.py" in (f.location or "") and "Python float" in f.message]
    if quantization:
        findings.items = [f for f in findings.items if f not in quantization]
        notes.append("int8: the tracer recorded calibrated scales and zero points as constants, "
                     "as intended")


def _golden_files(cases: List[Tuple[Tuple[Any, ...], Any]], rtol: float,
                  atol: Optional[float]) -> Dict[str, bytes]:
    """The golden index and its .npy files. Each float output records the absolute tolerance it
    is checked with (`atol`, or its scaled default); the index's own "atol", the largest of
    them, serves readers that predate per-output tolerances."""
    files: Dict[str, bytes] = {}
    index_cases = []
    recorded: List[float] = [rtol if atol is None else atol]

    def annotate(tensor: torch.Tensor) -> Dict[str, Any]:
        if not tensor.is_floating_point():
            return {}
        recorded.append(scaled_atol(rtol, tensor) if atol is None else atol)
        return {"atol": recorded[-1]}

    for number, (inputs, output) in enumerate(cases):
        counter = [0]

        def store(tensor: torch.Tensor, number=number, counter=counter) -> str:
            name = f"{GOLDEN_PREFIX}{number}/{counter[0]}.npy"
            counter[0] += 1
            files[name] = npy_bytes(tensor)
            return name

        index_cases.append({"inputs": [to_tree(value, store) for value in inputs],
                            "output": to_tree(output, store, annotate)})
    files[GOLDEN_INDEX] = json.dumps({"rtol": rtol, "atol": max(recorded),
                                      "cases": index_cases}).encode()
    return files


def export(module: torch.nn.Module, example_inputs: Any, path: str, *,
           method: Optional[str] = None, manifest: Optional[Manifest] = None,
           trace: Optional[Sequence[str]] = None, golden_inputs: Sequence[Any] = (),
           allow: Sequence[str] = (), rtol: Optional[float] = None,
           atol: Optional[float] = None, precision: str = "fp32",
           calibration: Sequence[Any] = (), quantize: str = "", format: str = "torchscript",
           cpu_target: str = "native", static_batches: Optional[Sequence[int]] = None
           ) -> ExportResult:
    """Exports `module` to the archive `path`.

    example_inputs: forward's arguments (a tuple, or one value); they drive tracing and become
      the first golden case. golden_inputs: further argument tuples recorded as golden cases.
    method: "trace" (the default), "script", or "hybrid": script the module and trace the
      submodules named in `trace` on the inputs they receive; without `trace`, script
      everything that scripts and trace the direct children that do not (result.notes says
      which).
    The module is switched to eval mode and exported under no_grad. The export is rerun on every
    golden case and compared with the eager module (|diff| <= atol + rtol * |expected|, the
    rule of torchship.tolerance; by default rtol by precision and, per output tensor,
    atol = rtol * max(1, largest |expected|)), and the checks of torchship.checks run
    (train-mode, tracer-warning, frozen-branch, device-literal). A finding stops the export
    with ExportError unless its id is in `allow`.
    The tolerance is recorded with the golden vectors: C++ checks them by the same rule.
    On a torch that deprecates TorchScript (2.10+) torch.jit's per-call warnings are silenced
    and result.notes says it once; a torch that refuses TorchScript raises ExportError.
    precision: "fp32"; "bf16" (the module runs under CPU autocast to bfloat16, recorded in the
      trace; outputs stay fp32); or "int8" (FX post-training static quantization with fbgemm of
      the submodule named by `quantize`, "" for the whole module, calibrated by running the
      pipeline on each argument tuple in `calibration`). bf16 needs method "trace", int8
      "trace" or "hybrid". The golden vectors then hold what the reduced module computes, and
      result.precision_report (also in the manifest) says how far it is from the fp32 module:
      max abs error per output and, for classification and segmentation, top-1 agreement.
    format: "torchscript" (a TorchScript archive), or "aoti": torch.export, then AOTInductor
      compiles it for this CPU into a .pt2 package (torchship.aoti; fp32 only, and method,
      trace, precision do not apply). Dim 0 of every tensor input with a manifest spec is a
      dynamic batch dimension when manifest.batch_dim, and every -1 of a spec's shape is
      dynamic; the rest of the example's structure (list lengths, non-tensor values) is fixed.
    cpu_target (aoti): "native" compiles for this CPU's features; "x86-64-v2", "x86-64-v3",
      "x86-64-v4" for that baseline (v2 without vector kernels). The manifest's export.cpu
      records the features the code may use; C++ refuses it on a CPU that lacks one.
    static_batches (aoti, with a batch dimension): batch sizes also compiled with every size
      fixed, into the same package, for requests of exactly that size (inductor prepacks
      convolution weights and picks kernels only for known sizes); () for none. By default
      batch 1, kept only where it ran under 97% of the dynamic model's time at export
      (result.notes has both times); sizes given here are kept. Each adds its compile time and
      a copy of the weights.
    """
    if format not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if format == "aoti":
        return _export_aoti(module, example_inputs, path, method=method, manifest=manifest,
                            trace=trace, golden_inputs=golden_inputs, allow=allow, rtol=rtol,
                            atol=atol, precision=precision, calibration=calibration,
                            quantize=quantize, cpu_target=cpu_target,
                            static_batches=static_batches)
    if static_batches is not None:
        raise ExportError("static_batches applies to format='aoti' (compiled code); a "
                          "TorchScript archive takes any batch size as it is")
    if cpu_target != "native":
        raise ExportError("cpu_target applies to format='aoti' (compiled code); a TorchScript "
                          "archive runs on any CPU libtorch runs on")
    method = "trace" if method is None else method
    if method not in METHODS:
        raise ExportError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    _check_allow(allow)
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and method != "trace":
        raise ExportError("precision='bf16' needs method 'trace': autocast's casts are recorded "
                          "by tracing the whole pipeline")
    if precision == "int8" and method == "script":
        raise ExportError("precision='int8' needs method 'trace' or 'hybrid': FX quantization "
                          "produces modules that TorchScript cannot script as a whole")
    if precision == "int8" and not calibration:
        raise ExportError("precision='int8' needs calibration=[...]: argument tuples (a few "
                          "hundred representative inputs) to measure activation ranges on")
    support = torchscript_support()
    if not support.available:
        raise ExportError(refusal_message(support))
    rtol = DEFAULT_RTOL[precision] if rtol is None else rtol
    manifest = manifest or Manifest()
    findings = Findings()
    notes: List[str] = []
    note = deprecation_note(support)
    if note:
        notes.append(note)
        _warn_once(note)
    with torchscript_deprecations_silenced():
        return _export(module, example_inputs, path, method, manifest, trace, golden_inputs,
                       allow, rtol, atol, precision, calibration, quantize, findings, notes)


def _export_aoti(module: torch.nn.Module, example_inputs: Any, path: str, *,
                 method: Optional[str],
                 manifest: Optional[Manifest], trace: Optional[Sequence[str]],
                 golden_inputs: Sequence[Any], allow: Sequence[str], rtol: Optional[float],
                 atol: Optional[float], precision: str, calibration: Sequence[Any],
                 quantize: str, cpu_target: str,
                 static_batches: Optional[Sequence[int]]) -> ExportResult:
    """Refuses the TorchScript-only options, then torchship.aoti exports."""
    refused = [name for name, given in (("method", method is not None), ("trace", trace),
                                        ("precision", precision != "fp32"),
                                        ("calibration", calibration), ("quantize", quantize))
               if given]
    if refused:
        raise ExportError(f"format='aoti' exports with torch.export, in fp32: "
                          f"{', '.join(refused)} appl{'ies' if len(refused) == 1 else 'y'} to "
                          "format='torchscript' only")
    _check_allow(allow)
    from .aoti import export_aoti  # torch >= 2.6 only: imported when asked for
    cases_inputs = [_as_args(example_inputs)] + [_as_args(extra) for extra in golden_inputs]
    return export_aoti(module, cases_inputs, path, manifest or Manifest(), allow,
                       DEFAULT_RTOL["fp32"] if rtol is None else rtol, atol, cpu_target,
                       static_batches)


def compare_cases(expected: List[Any], actual: List[Any], rtol: float, atol: Optional[float],
                  exported: str) -> Tuple[Dict[str, float], List[Tuple[int, Optional[str]]]]:
    """The exported model's outputs on the golden cases against the eager module's: the largest
    |difference| per output leaf over all cases, and each case's first mismatch by the
    tolerance rule (None when it has none). A case whose output has another structure raises
    ExportError naming `exported` ("exported module", "compiled package")."""
    max_errors: Dict[str, float] = {}
    mismatches: List[Tuple[int, Optional[str]]] = []
    for number, (want, got) in enumerate(zip(expected, actual)):
        try:
            errors = max_difference(want, got)
        except ValueError as error:
            raise ExportError(f"golden case {number}: the {exported} returns another "
                              f"structure than the Python module: {error}") from None
        for leaf, error in errors.items():
            max_errors[leaf] = max(max_errors.get(leaf, 0.0), error)
        mismatches.append((number, first_mismatch(want, got, rtol, atol)))
    return max_errors, mismatches


def _check_allow(allow: Sequence[str]) -> None:
    unknown = sorted(set(allow) - set(CHECK_IDS))
    if unknown:
        raise ExportError(f"allow: unknown check id(s) {', '.join(unknown)} "
                          f"(expected {', '.join(CHECK_IDS)})")


def settle_findings(findings: Findings, allow: Sequence[str], module: torch.nn.Module,
                    stacklevel: int) -> None:
    """Refuses the export for findings not in `allow`; the rest become ExportWarnings, reported
    at the caller of torchship.export (`stacklevel` counts from this function)."""
    blocking = findings.blocking(allow)
    if blocking:
        raise ExportError(f"export of {type(module).__name__} refused by {len(blocking)} "
                          f"check(s) (pass allow=[...] with their ids to accept):\n" +
                          "\n".join(str(f) for f in blocking), blocking)
    for finding in findings.items:
        warnings.warn(f"torchship.export: {finding}", ExportWarning, stacklevel=stacklevel)


def export_info_of(format: str, method: str) -> Dict[str, Any]:
    """The manifest's export section as both formats start it."""
    return {
        "format": format,
        "method": method,
        "torch_version": torch.__version__,
        "torchship_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


_WARNED: set = set()


def _warn_once(message: str) -> None:
    """Says `message` once per process: a deprecation is news once, not on every export."""
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(f"torchship.export: {message}", ExportWarning, stacklevel=3)


def _export(module: torch.nn.Module, example_inputs: Any, path: str, method: str,
            manifest: Manifest, trace: Optional[Sequence[str]], golden_inputs: Sequence[Any],
            allow: Sequence[str], rtol: Optional[float], atol: Optional[float], precision: str,
            calibration: Sequence[Any], quantize: str, findings: Findings,
            notes: List[str]) -> ExportResult:
    for finding in train_mode(module):
        findings.add(finding)
    module.eval()
    cases_inputs = [_as_args(example_inputs)] + [_as_args(extra) for extra in golden_inputs]

    fp32_module = module
    if precision == "bf16":
        module = Bfloat16(copy.deepcopy(module)).eval()
    elif precision == "int8":
        module = _quantize_noting_deprecations(module, quantize, calibration, notes)
    with torch.no_grad():
        expected = _run_reduced(module, cases_inputs, precision)
        exported = _convert(module, cases_inputs[0], method, trace, findings, notes)
        exported.eval()
        actual = []
        for number, args in enumerate(cases_inputs):
            try:
                actual.append(exported(*args))
            except Exception as error:
                raise ExportError(f"the exported module fails on golden case {number}:\n"
                                  f"{diagnose(error)}") from error

    max_errors, mismatches = compare_cases(expected, actual, rtol, atol, "exported module")
    for number, mismatch in mismatches:
        if mismatch:
            if method == "script":
                raise ExportError(f"golden case {number}: the scripted module computes something "
                                  f"else than the Python module ({mismatch})")
            findings.add(Finding(
                "frozen-branch",
                f"on golden case {number}, the trace computes something else than the Python "
                f"module ({mismatch}): tracing froze data-dependent control flow or shapes",
                "script the code with the branch (method='script'), or script the wrapper and "
                "trace only the network (method='hybrid', trace=[...])"))
    if method != "script" and not any(f.id == "frozen-branch" for f in findings.items):
        free = {i: spec.free_dims(manifest.batch_dim) for i, spec in enumerate(manifest.inputs)}
        for finding in frozen_branches(module, exported, cases_inputs[0], free, rtol, atol):
            findings.add(finding)
    for finding in device_literals(exported):
        findings.add(finding)

    if precision == "int8":
        _accept_quantization_constants(findings, notes)
    settle_findings(findings, allow, module, stacklevel=4)

    export_info = export_info_of("torchscript", method)
    reduced_report = None
    if precision != "fp32":
        with torch.no_grad():
            reference = [fp32_module(*args) for args in cases_inputs]
        reduced_report = precision_report(reference, actual, manifest.task)
        export_info["precision_report"] = reduced_report
        if precision == "int8":
            export_info["quantized_engine"] = torch.backends.quantized.engine
    manifest_dict = manifest.to_dict(export_info, precision)
    extra_files = {MANIFEST_FILE: json.dumps(manifest_dict, indent=2).encode()}
    extra_files.update(_golden_files(list(zip(cases_inputs, actual)), rtol, atol))
    torch.jit.save(exported, path, _extra_files=extra_files)
    return ExportResult(path, exported, manifest_dict, max_errors, findings.items, notes,
                        reduced_report)


class ExportWarning(UserWarning):
    """A finding the export accepted (a note, or a check id passed in `allow`)."""


def load(path: str, map_location: Union[str, torch.device] = "cpu"):
    """Loads an archive in Python: (module, manifest dict or None)."""
    extra = {MANIFEST_FILE: ""}
    with torchscript_deprecations_silenced():
        module = torch.jit.load(path, map_location=map_location, _extra_files=extra)
    manifest = json.loads(extra[MANIFEST_FILE]) if extra[MANIFEST_FILE] else None
    return module, manifest
