"""The OpenVINO writer of torchship.export (format="openvino"): torch.export, then
openvino.convert_model (.conversion) to OpenVINO IR, which is compiled from the archive's own
bytes (.runner) and checked against the Python module on every golden case and across its free
sizes before one archive (.ir_archive) holds the IR, the call spec, the manifest and the golden
vectors. The IR keeps full-precision weights: the precision is chosen where it runs. Static batch
sizes are checked and timed here, as AOTInductor's are; C++ compiles the IR reshaped to each one
kept at load, so they add no bytes to the archive."""

import os
import tempfile
import time
from typing import Any, List, Tuple

import torch
import torch.utils._pytree as pytree

from ..archive import MANIFEST_FILE, export_section, golden_files, manifest_file
from ..checks import Findings, settle_findings, train_mode
from ..dynamic_dims import exported_ranges, record_ranges
from ..errors import ExportError, first_line
from ..input_structure import argument_record
from ..options import ExportOptions
from ..program import ProgramInputs, export_program, program_inputs
from ..result import ExportResult
from ..size_checks import check_sizes, note_sizes, package_dims
from ..static_batches import example_rows, keep_static, static_entry, static_sizes
from ..verification import compare_cases
from ..weights_index import index_file
from .conversion import convert
from .ir_archive import CALL_SPEC, GRAPH, WEIGHTS, call_spec_file, write_ir_archive
from .runner import CompiledIR


def write_openvino(module: torch.nn.Module, cases_inputs: List[Tuple[Any, ...]], path: str,
                   options: ExportOptions) -> ExportResult:
    """Exports `module` to the OpenVINO archive `path`; `cases_inputs` are the golden cases'
    arguments, the example's first. `options` are validated, with their defaults filled in."""
    import openvino as ov
    findings = Findings()
    for finding in train_mode(module):
        findings.add(finding)
    module.eval()
    inputs = program_inputs(module, cases_inputs, options.manifest)
    notes: List[str] = []
    example = cases_inputs[0]
    with torch.no_grad():
        expected = [module(*args) for args in cases_inputs]
        program = export_program(module, example, inputs)
        started = time.monotonic()
        graph, weights = ir_bytes(convert(program))
        in_spec, out_spec = program.call_spec.in_spec, program.call_spec.out_spec
        compiled = CompiledIR(graph, weights, out_spec)
        notes.append(f"openvino: converted to IR in {time.monotonic() - started:.1f} s "
                     f"(OpenVINO {ov.get_version().split('-')[0]}, weights "
                     f"{len(weights) / 1e6:.1f} MB)")
        actual = [_run_case(compiled, f"on golden case {number}", args)
                  for number, args in enumerate(cases_inputs)]
        export_info = _export_info(program, inputs, example)
        sized, disagreement = check_sizes(
            module, compiled, example,
            package_dims(export_info["dynamic_dims"], inputs.positions),
            options.rtol, options.atol)
        if disagreement:
            raise ExportError(f"the OpenVINO model computes something else than the Python "
                              f"module {disagreement}: give the dimension a fixed size in the "
                              "manifest's input spec, or export with format='aoti'")
        note_sizes(sized, notes)
        kept = _static_batches(module, graph, weights, out_spec, compiled, example, inputs,
                               options, notes)

    max_errors, mismatches = compare_cases(expected, actual, options.rtol, options.atol,
                                           "OpenVINO model")
    for number, mismatch in mismatches:
        if mismatch:
            raise ExportError(f"golden case {number}: the OpenVINO model computes something "
                              f"else than the Python module ({mismatch})")
    if kept:
        export_info["static_batches"] = [static_entry(size, inputs.batched()) for size in kept]
    manifest_dict = options.manifest.to_dict(export_info, "fp32")
    settle_findings(findings, options.allow, module)
    files = {GRAPH: graph, WEIGHTS: weights,
             CALL_SPEC: call_spec_file(pytree.treespec_dumps(in_spec),
                                       pytree.treespec_dumps(out_spec)),
             "extra/" + MANIFEST_FILE: manifest_file(manifest_dict)}
    files.update(golden_files(list(zip(cases_inputs, actual)) +
                              [(case.args, case.actual) for case in sized],
                              options.rtol, options.atol, [case.label for case in sized]))
    files.update(index_file(module))
    write_ir_archive(path, files)
    return ExportResult(path, compiled, manifest_dict, max_errors, findings.items, notes)


def ir_bytes(model: Any) -> Tuple[bytes, bytes]:
    """The IR's graph and weights as ov.save_model writes them, in full precision."""
    import openvino as ov
    with tempfile.TemporaryDirectory(prefix="torchship-ir-") as folder:
        xml = os.path.join(folder, "model.xml")
        ov.save_model(model, xml, compress_to_fp16=False)
        with open(xml, "rb") as graph, open(os.path.join(folder, "model.bin"), "rb") as weights:
            return graph.read(), weights.read()


def _static_batches(module: torch.nn.Module, graph: bytes, weights: bytes, out_spec: Any,
                    dynamic: CompiledIR, example: Tuple[Any, ...], inputs: ProgramInputs,
                    options: ExportOptions, notes: List[str]) -> List[int]:
    """The static batch sizes kept: the IR reshaped to each, checked against the module on the
    example's rows and timed against the dynamic IR (keep_static)."""
    batched = inputs.batched()
    if not batched:
        return []
    positions = _flat_positions(example, batched)
    kept = []
    for size in static_sizes(options.static_batches, options.manifest):
        args = example_rows(example, batched, size)
        static = CompiledIR(graph, weights, out_spec,
                            static_batch={position: size for position in positions})
        expected, actual = module(*args), _run_case(static, f"at static batch {size}", args)
        _, mismatches = compare_cases([expected], [actual], options.rtol, options.atol,
                                      f"OpenVINO model at static batch {size}")
        if mismatches[0][1]:
            raise ExportError(f"the OpenVINO model at static batch {size} computes something "
                              f"else than the Python module ({mismatches[0][1]})")
        if keep_static("openvino", size, static, dynamic, args,
                       options.static_batches is None, notes):
            kept.append(size)
    return kept


def _flat_positions(example: Tuple[Any, ...], arguments: List[int]) -> List[int]:
    """Where each of `arguments` (tensor arguments) comes among the IR's inputs: the example's
    tensors, flattened in order."""
    positions, position = [], 0
    for index, value in enumerate(example):
        if index in arguments:
            positions.append(position)
        position += sum(isinstance(leaf, torch.Tensor) for leaf in pytree.tree_leaves(value))
    return positions


def _run_case(compiled: CompiledIR, where: str, args: Tuple[Any, ...]) -> Any:
    try:
        return compiled(*args)
    except Exception as error:
        raise ExportError(f"the OpenVINO model fails {where}: "
                          f"{first_line(str(error), type(error).__name__)}") from error


def _export_info(program: Any, inputs: ProgramInputs, example: Tuple[Any, ...]) -> dict:
    """The manifest's export section: torch.export's arguments and the dynamic sizes' ranges
    (OpenVINO runs the program's ranges as they are)."""
    import openvino as ov
    info = export_section("openvino", "torch.export")
    info.update({
        "openvino_version": ov.get_version(),
        "arguments": [argument_record(name, value) for name, value in zip(inputs.names, example)],
        "dynamic_dims": record_ranges(inputs.dynamic_dims, inputs.positions, example,
                                      exported_ranges(program)),
    })
    return info
