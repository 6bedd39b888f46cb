"""torchship.export(format="auto"): one archive holding every form the model exports to, each
written and verified by its own writer (TorchScript, AOTInductor, OpenVINO) exactly as when it
is asked for alone; C++ times those that reproduce the golden vectors on the machine that runs
the archive and keeps the fastest. A form that does not export is left out, its reason kept in
the manifest and the notes. The archive is a zip in PyTorch's layout whose records are the
forms' own archives, uncompressed:

    <root>/version                      "3"
    <root>/forms/torchscript.pt         each form's complete archive (manifest, golden vectors)
    <root>/forms/aoti.pt2
    <root>/forms/openvino.ov
    <root>/extra/torchship.json         the manifest; export.forms and export.left_out
"""

import os
import shutil
import tempfile
import time
from dataclasses import replace
from typing import Any, Callable, Dict, List, Tuple

import torch

from .archive import MANIFEST_FILE, export_section, manifest_file, write_zip_archive
from .errors import ExportError, first_line
from .options import ExportOptions, as_args
from .result import ExportResult

# Each form: its file in the archive, and the options that apply to it alone.
FORMS = {
    "torchscript": ("forms/torchscript.pt", ("cpu_target", "static_batches",
                                             "swappable_weights")),
    "aoti": ("forms/aoti.pt2", ("method", "trace")),
    "openvino": ("forms/openvino.ov", ("method", "trace", "cpu_target", "swappable_weights")),
}
Writer = Tuple[Callable[[ExportOptions], None], Callable[..., ExportResult]]
PRECISIONS = ("fp32", "auto")


def validate(options: ExportOptions) -> None:
    """Refuses what no form of an fp32 archive takes: a reduced precision is chosen at load
    (precision="auto"), from fp32 forms."""
    if options.precision not in PRECISIONS:
        raise ExportError(f"format='auto' exports every form in fp32; precision='auto' lets C++ "
                          f"choose bf16 where it runs: precision must be fp32 or auto, got "
                          f"{options.precision!r}")
    refused = [name for name, given in (("calibration", options.calibration and
                                         options.precision != "auto"),
                                        ("quantize", options.quantize)) if given]
    if refused:
        raise ExportError(f"format='auto': {', '.join(refused)} appl"
                          f"{'ies' if len(refused) == 1 else 'y'} to format='torchscript' only"
                          " (calibration also to precision='auto')")


def _form_options(options: ExportOptions, form: str) -> ExportOptions:
    """The caller's options as the form's own writer takes them: those of other forms reset."""
    defaults = ExportOptions()
    reset = {name: getattr(defaults, name) for name in FORMS[form][1]}
    return replace(options, format=form, precision="fp32", calibration=(), **reset,
                   **({"method": options.method or "trace"} if form == "torchscript" else {}))


def write_every_form(module: torch.nn.Module, cases_inputs: List[Tuple[Any, ...]], path: str,
                     options: ExportOptions, writers: Dict[str, Writer]) -> ExportResult:
    """Writes every form of `module` that exports into the archive `path`; `options` have their
    defaults filled in, `writers` are the formats' (validate, write) pairs. With precision
    "auto" the calibration inputs become golden cases too: C++ measures bf16's top-1 agreement
    on them. Raises ExportError when none exports."""
    if options.precision == "auto":
        cases_inputs = cases_inputs + [as_args(inputs) for inputs in options.calibration]
    written: Dict[str, Tuple[str, ExportResult, float]] = {}
    left_out: Dict[str, str] = {}
    notes: List[str] = []
    scratch = tempfile.mkdtemp(prefix=".torchship-auto-", dir=os.path.dirname(path) or ".")
    try:
        for form, (record, _) in FORMS.items():
            validate_form, write = writers[form]
            form_options = _form_options(options, form)
            started = time.monotonic()
            try:
                validate_form(form_options)
                result = write(module, cases_inputs, os.path.join(scratch, os.path.basename(record)),
                               form_options)
            except ExportError as error:
                left_out[form] = first_line(str(error), "ExportError")
                notes.append(f"auto: {form} left out: {left_out[form]}")
                continue
            written[form] = (result.path, result, time.monotonic() - started)
            notes.extend(note if note.startswith(form + ":") else f"{form}: {note}"
                         for note in result.notes)
        if not written:
            raise ExportError("format='auto': no form exports:\n" + "\n".join(
                f"  {form}: {reason}" for form, reason in left_out.items()))
        manifest = _manifest(options, written, left_out)
        # (forms stored uncompressed: C++ reads each one's bytes as they are)
        write_zip_archive(path, {**{FORMS[form][0]: file for form, (file, _, _) in
                                    written.items()},
                                 f"extra/{MANIFEST_FILE}": manifest_file(manifest)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    first = next(iter(written.values()))[1]
    notes.append(f"auto: {', '.join(written)} in one archive of "
                 f"{os.path.getsize(path) / 1e6:.1f} MB")
    return ExportResult(path, first.module, manifest, first.max_errors,
                        [f for _, result, _ in written.values() for f in result.findings], notes)


def _manifest(options: ExportOptions, written: Dict[str, Tuple[str, ExportResult, float]],
              left_out: Dict[str, str]) -> Dict[str, Any]:
    """The archive's manifest: the caller's, with the forms it holds and those left out. The
    first form's manifest gives the inputs' exported ranges."""
    first = next(iter(written.values()))[1].manifest
    info = export_section("auto", "every form")
    info["forms"] = [{"format": form, "record": FORMS[form][0], "bytes": os.path.getsize(file),
                      "seconds": round(seconds, 1)}
                     for form, (file, _, seconds) in written.items()]
    info["left_out"] = [{"format": form, "reason": reason} for form, reason in left_out.items()]
    if options.precision == "auto":
        info["precision"] = "auto"
    manifest = dict(first)
    manifest["export"] = info
    return manifest
