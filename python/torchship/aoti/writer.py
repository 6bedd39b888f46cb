"""The AOTInductor writer of torchship.export (format="aoti"): torch.export, then AOTInductor
compiles the program for one CPU target into a .pt2 package (torchship.aoti.pt2_package), which
is run on the golden cases and compared with the Python module before the manifest and golden
vectors are added. The compiled code is native code for one CPU family: the manifest's
export.cpu says which features it may use, and C++ refuses a package whose features the CPU
lacks instead of dying on an illegal instruction."""

import os
import shutil
import tempfile
import time
from typing import Any, List, Tuple

import torch

from ..archive import MANIFEST_FILE, export_section, golden_files, manifest_file
from ..checks import Findings, settle_findings, train_mode
from ..dynamic_dims import exported_ranges, record_ranges
from ..errors import ExportError, first_line
from ..input_structure import argument_record
from ..options import ExportOptions
from ..program import ProgramInputs, export_program, program_inputs
from ..result import ExportResult
from ..size_checks import check_sizes, note_sizes, package_dims
from ..static_batches import model_name, static_entry, static_sizes
from ..verification import compare_cases
from ..weights_index import index_file
from .cpu_targets import cpu_features
from .inductor_setup import (check_vectorized, compiler_environment, inductor_options,
                             runtime_input_checks, size_oblivious)
from .pt2_package import add_files, compile_package, compiled_bounds, vec_isa
from .static_batches import check_static_models, static_program


def write_aoti(module: torch.nn.Module, cases_inputs: List[Tuple[Any, ...]], path: str,
               options: ExportOptions) -> ExportResult:
    """Exports `module` to the .pt2 package `path`; `cases_inputs` are the golden cases'
    arguments, the example's first. `options` are validated, with their defaults filled in
    (torchship.export's docstring says what is checked)."""
    findings = Findings()
    for finding in train_mode(module):
        findings.add(finding)
    module.eval()
    inputs = program_inputs(module, cases_inputs, options.manifest)
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
                       options: ExportOptions, inputs: ProgramInputs,
                       findings: Findings) -> ExportResult:
    """Exports, compiles into `path`, runs the golden cases, appends manifest and golden files."""
    notes: List[str] = []
    rtol, atol, example = options.rtol, options.atol, cases_inputs[0]
    batched = inputs.batched()
    timed = options.static_batches is None  # asked for by name: kept; by default: kept if faster
    with torch.no_grad():
        expected = [module(*args) for args in cases_inputs]
        specialized, export_info = _compile(module, example, path, options, inputs, notes)
        with runtime_input_checks():
            compiled = torch._inductor.aoti_load_package(path)
            actual = _run_compiled(compiled, cases_inputs)
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
        export_info["static_batches"] = [static_entry(size, batched) for size in kept]
    manifest_dict = options.manifest.to_dict(export_info, "fp32")
    settle_findings(findings, options.allow, module)
    files = {"extra/" + MANIFEST_FILE: manifest_file(manifest_dict)}
    files.update(golden_files(list(zip(cases_inputs, actual)) +
                              [(case.args, case.actual) for case in sized], rtol, atol,
                              [case.label for case in sized]))
    files.update(index_file(module, frozen=not options.swappable_weights))
    add_files(path, files)
    return ExportResult(path, compiled, manifest_dict, max_errors, findings.items, notes)


def _compile(module: torch.nn.Module, example: Tuple[Any, ...], path: str,
             options: ExportOptions, inputs: ProgramInputs, notes: List[str]):
    """torch.export, then AOTInductor compiles the program (and a static copy per batch size
    asked for) into the package `path` for the options' CPU target. Returns the static
    programs by batch size and the manifest's export section."""
    cpu_target, batched = options.cpu_target, inputs.batched()
    sizes = static_sizes(options.static_batches, options.manifest) if batched else []
    program = export_program(module, example, inputs)
    specialized = {size: static_program(module, example, inputs.dynamic_shapes, batched, size)
                   for size in sizes}
    started = time.monotonic()
    with compiler_environment(cpu_target), size_oblivious():
        # The exported program itself is compiled, with its ranges as exported.
        compile_package(path, {"model": program, **{
            model_name(size): static for size, static in specialized.items()}},
                        inductor_options(cpu_target, options.swappable_weights))
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
    return specialized, export_info


def _run_compiled(compiled, cases_inputs: List[Tuple[Any, ...]]) -> List[Any]:
    """The compiled package's outputs on the golden cases."""
    actual = []
    for number, args in enumerate(cases_inputs):
        try:
            actual.append(compiled(*args))
        except Exception as error:
            raise ExportError(f"the compiled package fails on golden case {number}: "
                              f"{first_line(str(error), type(error).__name__)}") from error
    return actual
