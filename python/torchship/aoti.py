"""The AOTInductor writer of torchship.export (format="aoti"): torch.export, then AOTInductor
compiles the program for one CPU target into a .pt2 package (torchship.pt2_package), which is run
on the golden cases and compared with the Python module before the manifest and golden vectors
are added. The compiled code is native code for one CPU family: the manifest's export.cpu says
which features it may use, and C++ refuses a package whose features the CPU lacks instead of
dying on an illegal instruction.

The AOTInductor side's names that scripts and tests use are importable from here too: available,
the CPU targets and features (torchship.cpu_targets), the compiler environment and options
(torchship.inductor_setup), BATCH_MAX (torchship.dynamic_dims)."""

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import torch

from .archive import MANIFEST_FILE, export_section, golden_files, manifest_file
from .checks import Findings, settle_findings, train_mode
from .cpu_targets import CPU_TARGETS, FEATURES, cpu_features, cpu_flags, is_x86  # noqa: F401
from .doctor import diagnose_export
from .dynamic_dims import (BATCH_MAX, compiled_bounds, dynamic_shapes,  # noqa: F401
                           exported_ranges, record_ranges)
from .errors import ExportError, first_line
from .inductor_setup import (available, check_vectorized, compiler_environment,  # noqa: F401
                             inductor_cache_dir, inductor_options, runtime_input_checks,
                             size_oblivious)
from .input_structure import argument_names, argument_record, refuse_varying_inputs
from .options import ExportOptions
from .pt2_package import add_files, compile_package, vec_isa
from .result import ExportResult
from .size_checks import check_sizes, note_sizes, package_dims
from .static_batches import check_static_models, model_name, static_program, static_sizes
from .verification import compare_cases


@dataclass(frozen=True)
class _Inputs:
    """The package's inputs: forward's argument names, torch.export's dynamic_shapes, what the
    manifest's export.dynamic_dims records of them (before their ranges are known) and the
    argument position of each input it names."""

    names: List[str]
    dynamic_shapes: Any
    dynamic_dims: Dict[str, Any]
    positions: Dict[str, int]

    def batched(self) -> List[int]:
        """The positions of the arguments with a dynamic batch dimension."""
        return sorted(self.positions[name] for name, dims in self.dynamic_dims.items()
                      if dims.get("0") == "batch")


def write_aoti(module: torch.nn.Module, cases_inputs: List[Tuple[Any, ...]], path: str,
               options: ExportOptions) -> ExportResult:
    """Exports `module` to the .pt2 package `path`; `cases_inputs` are the golden cases'
    arguments, the example's first. `options` are validated, with their defaults filled in
    (torchship.export's docstring says what is checked)."""
    findings = Findings()
    for finding in train_mode(module):
        findings.add(finding)
    module.eval()
    names = argument_names(module, len(cases_inputs[0]))
    refuse_varying_inputs(names, cases_inputs, options.manifest)
    inputs = _Inputs(names, *dynamic_shapes(names, cases_inputs[0], options.manifest))
    # Compiled beside `path` and moved there once every check passed: a failed export leaves
    # neither a package without manifest nor a damaged older one.
    # (A folder of its own keeps the file name: the package's root folder is named after it.)
    folder, base = os.path.split(os.path.abspath(path))
    scratch = tempfile.mkdtemp(prefix=".torchship-export-", dir=folder)
    try:
        partial = os.path.join(scratch, base)
        result = _compile_and_check(module, cases_inputs, partial, options, inputs, findings)
        os.replace(partial, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.path = path
    return result


def _compile_and_check(module: torch.nn.Module, cases_inputs: List[Tuple[Any, ...]], path: str,
                       options: ExportOptions, inputs: _Inputs,
                       findings: Findings) -> ExportResult:
    """Exports, compiles into `path`, runs the golden cases, appends manifest and golden files."""
    notes: List[str] = []
    rtol, atol, cpu_target = options.rtol, options.atol, options.cpu_target
    example = cases_inputs[0]
    batched = inputs.batched()
    timed = options.static_batches is None  # asked for by name: kept; by default: kept if faster
    sizes = static_sizes(options.static_batches, options.manifest) if batched else []

    with torch.no_grad():
        expected = [module(*args) for args in cases_inputs]
        try:
            program = torch.export.export(module, example, dynamic_shapes=inputs.dynamic_shapes)
        except Exception as error:
            raise ExportError(f"torch.export cannot export {type(module).__name__}:\n"
                              f"{diagnose_export(error)}") from error
        specialized = {size: static_program(module, example, inputs.dynamic_shapes, batched,
                                            size)
                       for size in sizes}
        started = time.monotonic()
        with compiler_environment(cpu_target), size_oblivious():
            # The exported program itself is compiled, with its ranges as exported.
            compile_package(path, {"model": program, **{
                model_name(size): static for size, static in specialized.items()}},
                            inductor_options(cpu_target))
        compile_seconds = time.monotonic() - started
        isa = vec_isa(path)
        check_vectorized(isa, cpu_target)
        export_info = export_section("aoti", "torch.export")
        export_info.update({
            "cpu": {"target": cpu_target, "vec_isa": isa, "features": cpu_features(cpu_target)},
            "arguments": [argument_record(name, value)
                          for name, value in zip(inputs.names, example)],
            "dynamic_dims": record_ranges(inputs.dynamic_dims, inputs.positions, example,
                                          exported_ranges(program), compiled_bounds(path)),
        })
        notes.append(f"aoti: compiled in {compile_seconds:.0f} s for {cpu_target} "
                     f"(vector ISA {isa})" + (
                         f", with static batch size(s) {', '.join(map(str, sizes))}"
                         if specialized else ""))

        with runtime_input_checks():
            compiled = torch._inductor.aoti_load_package(path)
            actual = []
            for number, args in enumerate(cases_inputs):
                try:
                    actual.append(compiled(*args))
                except Exception as error:
                    raise ExportError(f"the compiled package fails on golden case {number}: "
                                      f"{first_line(str(error), type(error).__name__)}"
                                      ) from error
            kept = check_static_models(module, path, compiled, specialized, rtol, atol, timed,
                                       notes)
            # The dynamic sizes the package accepts, checked beyond the example's.
            sized, disagreement = check_sizes(
                module, compiled, example,
                package_dims(export_info["dynamic_dims"], inputs.positions), rtol, atol)
            if disagreement:
                raise ExportError(
                    f"the compiled package computes something else than the Python module "
                    f"{disagreement}; AOTInductor's code is wrong at that size: give the "
                    "dimension a fixed size in the manifest's input spec, or export as "
                    "TorchScript")
            note_sizes(sized, notes)

    max_errors, mismatches = compare_cases(expected, actual, rtol, atol, "compiled package")
    for number, mismatch in mismatches:
        if mismatch:
            raise ExportError(f"golden case {number}: the compiled package computes something "
                              f"else than the Python module ({mismatch})")

    if kept:
        export_info["static_batches"] = [
            {"batch": size, "model": model_name(size), "arguments": batched} for size in kept]
    manifest_dict = options.manifest.to_dict(export_info, "fp32")
    settle_findings(findings, options.allow, module)
    files = {"extra/" + MANIFEST_FILE: manifest_file(manifest_dict)}
    files.update(golden_files(list(zip(cases_inputs, actual)) +
                              [(case.args, case.actual) for case in sized], rtol, atol,
                              [case.label for case in sized]))
    add_files(path, files)
    return ExportResult(path, compiled, manifest_dict, max_errors, findings.items, notes)
