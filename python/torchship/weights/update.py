"""The writer of torchship.export_weights (torchship.export passes each format's prover): a
weights-only update of an archive exported before. It refuses a
module that is not the archive's (tensors, structure), computes each form's golden vectors with
the new weights, proves on the TorchScript form (the archive's own graph, given the new weights)
and the OpenVINO form (its IR converted again) that they compute what the module computes, and
writes one file C++ applies to a loaded model without compiling anything:

    <root>/version
    <root>/torchship/weights.json            what it updates: the base's signature, its forms,
                                             its tensors and where each is
    <root>/torchship/weights/N.npy           the tensors, by the index's order
    <root>/FORM/torchship/golden/...         each form's golden vectors, computed by the new weights
    <root>/openvino/model.xml, model.bin     the IR converted again (OpenVINO folds weights into
                                             its constants), when the base has that form
"""

import datetime
import json
import os
from typing import Any, Callable, Dict, List, Tuple

import torch

from ..archive import golden_files, write_zip_archive
from ..errors import ExportError
from ..tree import npy_bytes
from ..verification import compare_cases
from ..version import __version__
from ..weights_index import first_difference, named_tensors, weights_index
from .base_archive import ArchiveForm, index_of, manifest_of, read_forms

UPDATE_FILE = "torchship/weights.json"
TENSOR_PREFIX = "torchship/weights/"
UPDATE_KIND = "torchship weights update"


class WeightsUpdateResult:
    """What export_weights wrote: the file, the forms it updates, and what it decided."""

    def __init__(self, path: str, forms: List[str], notes: List[str],
                 max_errors: Dict[str, float]):
        self.path, self.forms, self.notes, self.max_errors = path, forms, notes, max_errors

    def __repr__(self) -> str:
        return f"WeightsUpdateResult({self.path!r}, forms={self.forms})"


def write_update(module: torch.nn.Module, base_archive: str, path: str,
                 provers: Dict[str, Callable[..., Any]]) -> WeightsUpdateResult:
    """Writes to `path` the weights of `module` as an update of `base_archive`, an fp32 archive
    that torchship.export wrote from a module of the same code and shapes. Raises ExportError
    naming the first difference (a tensor's name, dtype or shape; a submodule's class or
    settings; a forward's code) or where a form with the new weights computes something else
    than the module. An AOTInductor form compiled with frozen weights (the default) takes no
    update: export it with swappable_weights=True; the other forms are updated. `provers`: each
    format's outputs_with_weights (torchship.export passes them), which runs the form with the
    new weights and gives the records it needs."""
    module.eval()
    forms = read_forms(base_archive)
    base_index = index_of(forms[0])
    for form in forms:
        if index_of(form)["precision"] != "fp32":
            raise ExportError(f"{form.origin} is a {index_of(form)['precision']} archive; "
                              "weight updates apply to fp32 archives")
    difference = first_difference(base_index, weights_index(module))
    if difference:
        raise ExportError(f"the module is not the one {base_archive} was exported from: "
                          f"{difference}")
    notes: List[str] = []
    updated = [form for form in forms if not _frozen(form, notes)]
    if not updated:
        raise ExportError(f"{base_archive}: its AOTInductor model was compiled with frozen "
                          "weights, which cannot be replaced; export it with "
                          "swappable_weights=True")
    tensors = named_tensors(module)
    records: Dict[str, bytes] = {f"{TENSOR_PREFIX}{number}.npy": npy_bytes(tensor)
                                 for number, (_, tensor) in enumerate(tensors)}
    max_errors: Dict[str, float] = {}
    with torch.no_grad():
        for form in updated:
            records.update(_form_records(module, form, tensors, max_errors, provers))
    records[UPDATE_FILE] = json.dumps(_description(base_archive, base_index, updated,
                                                   tensors), indent=1).encode()
    write_zip_archive(path, records)
    notes.append(f"weights of {', '.join(form.format for form in updated)} in "
                 f"{os.path.getsize(path) / 1e6:.1f} MB")
    return WeightsUpdateResult(path, [form.format for form in updated], notes, max_errors)


def _frozen(form: ArchiveForm, notes: List[str]) -> bool:
    if not index_of(form)["frozen"]:
        return False
    notes.append(f"{form.format}: left out: compiled with frozen weights (export with "
                 "swappable_weights=True to update them)")
    return True


def _description(base_archive: str, base_index: Dict[str, Any], forms: List[ArchiveForm],
                 tensors: List[Tuple[str, torch.Tensor]]) -> Dict[str, Any]:
    return {
        "kind": UPDATE_KIND, "version": 1,
        "signature": base_index["signature"],
        "base": os.path.basename(base_archive),
        "forms": [form.format for form in forms],
        "tensors": [{"name": name, "datatype": str(tensor.dtype).replace("torch.", ""),
                     "shape": list(tensor.shape), "record": f"{TENSOR_PREFIX}{number}.npy"}
                    for number, (name, tensor) in enumerate(tensors)],
        "torch_version": torch.__version__, "torchship_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _form_records(module: torch.nn.Module, form: ArchiveForm,
                  tensors: List[Tuple[str, torch.Tensor]], max_errors: Dict[str, float],
                  provers: Dict[str, Callable[..., Any]]) -> Dict[str, bytes]:
    """The form's golden vectors with the new weights (what the form computes where its prover
    runs it here, else the module's outputs) and the records its prover adds (OpenVINO's IR)."""
    rtol, cases = form.golden()
    arguments = [args for args, _ in cases]
    expected = [module(*args) for args in arguments]
    records: Dict[str, bytes] = {}
    actual = expected
    if form.format in provers:
        records, actual = provers[form.format](module, tensors, cases, form.data, form.origin,
                                               manifest_of(form))
    errors, mismatches = compare_cases(expected, actual, rtol, None, f"{form.format} form")
    for number, mismatch in mismatches:
        if mismatch:
            raise ExportError(f"{form.origin} with the new weights computes something else "
                              f"than the module on golden case {number} ({mismatch}): its "
                              "graph is not the module's")
    for leaf, error in errors.items():
        max_errors[f"{form.format} {leaf}"] = error
    labels = [label for _, label in cases if label]
    golden = golden_files(list(zip(arguments, actual)), rtol, None, labels)
    records.update({f"{form.format}/{name}": data for name, data in golden.items()})
    return records
