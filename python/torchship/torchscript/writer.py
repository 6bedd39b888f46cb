"""The TorchScript writer of torchship.export (format="torchscript"): converts the pipeline
(.conversion), in reduced precision when asked (.precision), runs the checks of
torchship.checks, and saves one archive with the manifest and golden vectors as extra files
(torchship.archive); and `load`, which reads such an archive back in Python."""

import copy
import json
import os
import warnings
from typing import Any, List, Sequence, Tuple, Union

import torch

from ..archive import MANIFEST_FILE, export_section, golden_files, manifest_file
from ..checks import Findings, device_literals, frozen_branches, settle_findings, train_mode
from ..doctor import diagnose
from ..errors import ExportError, Finding, first_line, warn
from ..options import ExportOptions, as_args
from ..result import ExportResult
from ..size_checks import check_sizes, manifest_dims, note_sizes
from ..verification import compare_cases
from ..weights_index import index_file
from .compat import deprecation_note, torchscript_deprecations_silenced, torchscript_support
from .conversion import convert
from .precision import (Bfloat16, bf16_convolution_problem, quantize_int8,
                        reduced_precision_report)


def write_torchscript(module: torch.nn.Module, cases_inputs: List[Tuple[Any, ...]], path: str,
                      options: ExportOptions) -> ExportResult:
    """Exports `module` to the TorchScript archive `path`; `cases_inputs` are the golden cases'
    arguments, the example's first. `options` are validated, with their defaults filled in."""
    notes: List[str] = []
    note = deprecation_note(torchscript_support())
    if note:
        notes.append(note)
        _warn_once(note)
    with torchscript_deprecations_silenced():
        return _write(module, cases_inputs, path, options, notes)


_WARNED: set = set()


def _warn_once(message: str) -> None:
    """Says `message` once per process: a deprecation is news once, not on every export."""
    if message not in _WARNED:
        _WARNED.add(message)
        warn(message)


def _write(module: torch.nn.Module, cases_inputs: List[Tuple[Any, ...]], path: str,
           options: ExportOptions, notes: List[str]) -> ExportResult:
    findings = Findings()
    for finding in train_mode(module):
        findings.add(finding)
    module.eval()
    fp32_module = module
    if options.precision == "bf16":
        module = Bfloat16(copy.deepcopy(module)).eval()
    elif options.precision == "int8":
        module = _quantize_noting_deprecations(module, options.quantize, options.calibration,
                                               notes)
    with torch.no_grad():
        expected = _run_reduced(module, cases_inputs, options.precision)
        exported = convert(module, cases_inputs[0], options.method, options.trace, findings,
                           notes, _sizes_fixed(options.manifest))
        exported.eval()
        actual = _run_exported(exported, cases_inputs)
    max_errors, sized = _verify(module, exported, cases_inputs, expected, actual, options,
                                findings, notes)
    if options.precision == "int8":
        _accept_quantization_constants(findings, notes)
    settle_findings(findings, options.allow, module)
    manifest_dict, precision_report = _save(exported, path, fp32_module, cases_inputs, actual,
                                            sized, options)
    return ExportResult(path, exported, manifest_dict, max_errors, findings.items, notes,
                        precision_report)


def _run_exported(exported, cases_inputs: List[Tuple[Any, ...]]) -> List[Any]:
    """The exported module's outputs on the golden cases."""
    actual = []
    for number, args in enumerate(cases_inputs):
        try:
            actual.append(exported(*args))
        except Exception as error:
            raise ExportError(f"the exported module fails on golden case {number}:\n"
                              f"{diagnose(error)}") from error
    return actual


def _verify(module, exported, cases_inputs: List[Tuple[Any, ...]], expected: List[Any],
            actual: List[Any], options: ExportOptions, findings: Findings,
            notes: List[str]) -> Tuple[dict, list]:
    """The exported module against the Python one: on the golden cases, at other sizes of the
    manifest's free dimensions, and for frozen branches and device literals. A scripted module
    that computes something else fails the export; a trace's difference is a finding. Returns
    the largest error per output and the size cases that were checked."""
    method, manifest, rtol, atol = options.method, options.manifest, options.rtol, options.atol
    max_errors, mismatches = compare_cases(expected, actual, rtol, atol, "exported module")
    for number, mismatch in mismatches:
        if mismatch:
            _differs(method, findings,
                     f"golden case {number}: the scripted module computes something else than "
                     f"the Python module ({mismatch})",
                     f"on golden case {number}, the trace computes something else than the "
                     f"Python module ({mismatch}): tracing froze data-dependent control flow or "
                     "shapes", "script the code with the branch (method='script')")
    sized, disagreement = check_sizes(module, exported, cases_inputs[0],
                                      manifest_dims(manifest, cases_inputs[0]), rtol, atol)
    if disagreement:
        _differs(method, findings,
                 f"the scripted module computes something else than the Python module "
                 f"{disagreement}",
                 f"the trace computes something else than the Python module {disagreement}: "
                 "tracing froze a size or a data-dependent branch",
                 "script the code that depends on the size (method='script')")
    note_sizes(sized, notes)
    if method != "script" and not any(f.id == "frozen-branch" for f in findings.items):
        free = {i: spec.free_dims(manifest.batch_dim) for i, spec in enumerate(manifest.inputs)}
        for finding in frozen_branches(module, exported, cases_inputs[0], free, rtol, atol):
            findings.add(finding)
    for finding in device_literals(exported):
        findings.add(finding)
    return max_errors, sized


def _differs(method: str, findings: Findings, scripted: str, traced: str, fix: str) -> None:
    """The exported module computes something else than the Python one: for a scripted module
    the export fails (`scripted`), for a trace it is a frozen-branch finding (`traced`)."""
    if method == "script":
        raise ExportError(scripted)
    findings.add(Finding("frozen-branch", traced, f"{fix}, or script the wrapper and trace only "
                         "the network (method='hybrid', trace=[...])"))


def _save(exported, path: str, fp32_module, cases_inputs: List[Tuple[Any, ...]],
          actual: List[Any], sized: list, options: ExportOptions):
    """Writes the archive: the module with its manifest and golden vectors as extra files.
    Returns the manifest and, for a reduced precision, its report against fp32."""
    precision, manifest = options.precision, options.manifest
    export_info = export_section("torchscript", options.method)
    precision_report = None
    if precision != "fp32":
        with torch.no_grad():
            reference = [fp32_module(*args) for args in cases_inputs]
        precision_report = reduced_precision_report(reference, actual, manifest.task)
        export_info["precision_report"] = precision_report
        if precision == "int8":
            export_info["quantized_engine"] = torch.backends.quantized.engine
    manifest_dict = manifest.to_dict(export_info, precision)
    extra_files = {MANIFEST_FILE: manifest_file(manifest_dict)}
    extra_files.update(golden_files(list(zip(cases_inputs, actual)) +
                                    [(case.args, case.actual) for case in sized],
                                    options.rtol, options.atol, [case.label for case in sized]))
    extra_files.update(index_file(fp32_module, precision))
    torch.jit.save(exported, path, _extra_files=extra_files)
    return manifest_dict, precision_report


def _sizes_fixed(manifest) -> bool:
    """The manifest fixes the size of every input dimension but the batch's."""
    return bool(manifest.inputs) and all(
        dim == 0 and manifest.batch_dim
        for spec in manifest.inputs for dim in spec.free_dims(manifest.batch_dim))


def _run_reduced(module: torch.nn.Module, cases_inputs: List[Tuple[Any, ...]],
                 precision: str) -> List[Any]:
    """The module's outputs on the golden inputs. A reduced-precision module that fails here
    fails for want of kernels (the fp32 one ran while it was calibrated or copied): say so."""
    try:
        return [module(*args) for args in cases_inputs]
    except RuntimeError as error:
        if precision == "fp32":
            raise
        why = first_line(str(error), type(error).__name__)
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
        quantized = quantize_int8(module, target, [as_args(c) for c in calibration])
    torch_folder = os.path.dirname(torch.__file__) + os.sep
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


def load(path: str, map_location: Union[str, torch.device] = "cpu"):
    """Loads an archive in Python: (module, manifest dict or None)."""
    extra = {MANIFEST_FILE: ""}
    with torchscript_deprecations_silenced():
        module = torch.jit.load(path, map_location=map_location, _extra_files=extra)
    manifest = json.loads(extra[MANIFEST_FILE]) if extra[MANIFEST_FILE] else None
    return module, manifest
