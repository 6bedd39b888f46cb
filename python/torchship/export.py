"""torchship.export: validates what the caller asks for and hands it, as ExportOptions, to the
writer of the format, one subpackage each: torchship.torchscript (a self-describing TorchScript
archive), torchship.aoti (an AOTInductor .pt2 package) or torchship.openvino (OpenVINO IR in an
archive of its own)."""

import dataclasses
from typing import Any, Optional, Sequence

import torch

from . import aoti, every_form, openvino, torchscript
from .openvino import weights as openvino_weights
from .torchscript import weights as torchscript_weights
from .weights import WeightsUpdateResult, write_update
from .checks import check_allow
from .errors import ExportError
from .manifest import Manifest
from .options import ExportOptions, as_args
from .result import ExportResult
from .tolerance import DEFAULT_RTOL

# Each format's validation and writer (they receive the options validated, defaults filled in).
WRITERS = {
    "torchscript": (torchscript.validate, torchscript.write_torchscript),
    "aoti": (aoti.validate, aoti.write_aoti),
    "openvino": (openvino.validate, openvino.write_openvino),
}
FORMATS = tuple(WRITERS) + ("auto",)


def export(module: torch.nn.Module, example_inputs: Any, path: str, *,
           method: Optional[str] = None, manifest: Optional[Manifest] = None,
           trace: Optional[Sequence[str]] = None, golden_inputs: Sequence[Any] = (),
           allow: Sequence[str] = (), rtol: Optional[float] = None,
           atol: Optional[float] = None, precision: str = "fp32",
           calibration: Sequence[Any] = (), quantize: str = "", format: str = "torchscript",
           cpu_target: str = "native", static_batches: Optional[Sequence[int]] = None,
           swappable_weights: bool = False) -> ExportResult:
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
      With format="auto": "fp32", or "auto" (every form in fp32; C++ also tries the OpenVINO
      form in bf16 where the CPU computes bf16 natively and keeps it where every golden case
      agrees within bf16's tolerance and top-1 agrees with fp32 on 99% of the rows; the
      `calibration` inputs become golden cases too, so that agreement is measured on them).
    format: "torchscript" (a TorchScript archive); "aoti": torch.export, then AOTInductor
      compiles it for this CPU into a .pt2 package (torchship.aoti; fp32 only, and method,
      trace, precision do not apply); or "openvino": torch.export, then openvino.convert_model
      to OpenVINO IR, in an archive of its own (torchship.openvino; fp32 weights: C++ runs it
      in fp32 unless told to use bf16, checked against the golden vectors at load); or "auto":
      every form that exports, each by its own writer and checks, in one archive (C++ times
      those that reproduce the golden vectors where it runs and keeps the fastest; a form that
      does not export is left out, its reason in result.notes and the manifest; fp32 only,
      each form's options apply to it alone). Dim 0 of every tensor input with a manifest spec
      is a dynamic batch dimension when manifest.batch_dim, and every -1 of a spec's shape is
      dynamic; the rest of the example's structure (list lengths, non-tensor values) is fixed.
    cpu_target (aoti): "native" compiles for this CPU's features; "x86-64-v2", "x86-64-v3",
      "x86-64-v4" for that baseline (v2 without vector kernels). The manifest's export.cpu
      records the features the code may use; C++ refuses it on a CPU that lacks one.
    The torch.export formats (aoti, openvino) take the same dynamic sizes.
    static_batches (aoti and openvino, with a batch dimension): batch sizes also compiled with
      the batch fixed, for requests of exactly that size (the compilers pick kernels and
      prepack weights only for known sizes); () for none. By default batch 1, kept only where
      it ran under 97% of the dynamic model's time at export (result.notes has both times);
      sizes given here are kept. aoti compiles each into the package (its compile time and a
      copy of the weights); openvino records the size, and C++ compiles the IR reshaped to it
      at load.
    swappable_weights (aoti, and the aoti form of "auto"): compile without freezing, every
      parameter and buffer kept as a constant under its own name, so that a weights update
      (torchship.export_weights) can replace them in C++; frozen weights (the default) are
      folded and prepacked for speed and cannot be replaced. Every archive records its weights
      index (torchship/weights_index.json); TorchScript and OpenVINO forms always take updates.
    """
    options = ExportOptions(
        method=method, manifest=manifest, trace=trace, golden_inputs=golden_inputs, allow=allow,
        rtol=rtol, atol=atol, precision=precision, calibration=calibration, quantize=quantize,
        format=format, cpu_target=cpu_target, static_batches=static_batches,
        swappable_weights=swappable_weights)
    if options.format not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {options.format!r}")
    cases_inputs = [as_args(example_inputs)] + [as_args(extra) for extra in golden_inputs]
    if options.format == "auto":
        every_form.validate(options)
        check_allow(options.allow)
        return every_form.write_every_form(module, cases_inputs, path, _with_defaults(options),
                                           WRITERS)
    validate, write = WRITERS[options.format]
    validate(options)
    check_allow(options.allow)
    if options.format == "torchscript" and options.method is None:
        options = dataclasses.replace(options, method="trace")
    return write(module, cases_inputs, path, _with_defaults(options))


def _with_defaults(options: ExportOptions) -> ExportOptions:
    """`options` with the defaults of rtol (by precision; precision "auto" exports fp32) and
    manifest (an empty one)."""
    exported = "fp32" if options.precision == "auto" else options.precision
    return dataclasses.replace(
        options, manifest=options.manifest or Manifest(),
        rtol=DEFAULT_RTOL[exported] if options.rtol is None else options.rtol)


# Each format's proof of a weights update: the form run with the new weights (None: the
# module's own outputs stand, as for AOTInductor, whose package runs only in C++ here).
PROVERS = {"torchscript": torchscript_weights.outputs_with_weights,
           "openvino": openvino_weights.outputs_with_weights}


def export_weights(module: torch.nn.Module, base_archive: str, path: str) -> WeightsUpdateResult:
    """Writes to `path` the weights of `module` as an update of `base_archive`, an fp32 archive
    that torchship.export wrote from a module of the same code and shapes: C++ applies it to the
    loaded model without compiling (Model::with_weights, --weights, a model.weights version).
    Raises ExportError naming the first difference (a tensor's name, dtype or shape; a
    submodule's class or settings; a forward's code) or where a form with the new weights
    computes something else than the module. An AOTInductor form compiled with frozen weights
    (the default) takes no update: export it with swappable_weights=True; the other forms of
    an archive of every form are updated (result.notes says so)."""
    return write_update(module, base_archive, path, PROVERS)
