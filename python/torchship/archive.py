"""What every export records beside the model, and under which names: the manifest
(torchship.json, with its export section) and the golden vectors (an index and .npy files).
A TorchScript archive holds them as extra files under these names; a .pt2 package under its root
folder, the manifest in extra/ (torchship.aoti.pt2_package)."""

import datetime
import json
import os
import zipfile
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from .tolerance import scaled_atol
from .tree import npy_bytes, to_tree
from .version import __version__

MANIFEST_FILE = "torchship.json"
GOLDEN_INDEX = "torchship/golden/index.json"
GOLDEN_PREFIX = "torchship/golden/"


def export_section(format: str, method: str) -> Dict[str, Any]:
    """The manifest's export section as both formats start it."""
    return {
        "format": format,
        "method": method,
        "torch_version": torch.__version__,
        "torchship_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_zip_archive(path: str, records: Dict[str, Union[bytes, str]]) -> None:
    """A zip laid out as PyTorch lays out its archives (one root folder, named after the file,
    holding a "version" record), every record uncompressed so that C++ reads its bytes as they
    are; `records` maps names relative to the root to bytes, or to a file's path (copied in
    streaming). Written through a partial file renamed into place: a failure leaves no
    half-written archive."""
    root = os.path.splitext(os.path.basename(path))[0] or "model"
    partial = path + ".partial"
    stamp = (1980, 1, 1, 0, 0, 0)
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED,
                             allowZip64=True) as archive:
            for name, data in {"version": b"3\n", **records}.items():
                if isinstance(data, bytes):
                    archive.writestr(zipfile.ZipInfo(f"{root}/{name}", stamp), data)
                else:
                    archive.write(data, f"{root}/{name}")
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def manifest_file(manifest: Dict[str, Any]) -> bytes:
    """The manifest as torchship.json holds it."""
    return json.dumps(manifest, indent=2).encode()


def golden_files(cases: List[Tuple[Tuple[Any, ...], Any]], rtol: float,
                 atol: Optional[float], labels: Sequence[str] = ()) -> Dict[str, bytes]:
    """The golden index and its .npy files. Each float output records the absolute tolerance it
    is checked with (`atol`, or its scaled default); the index's own "atol", the largest of
    them, serves readers that predate per-output tolerances. `labels` name the last cases
    (size checks: "input 'image' dim 0 = 97"), recorded as each case's "label"."""
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
        labelled = number - (len(cases) - len(labels))
        if labelled >= 0:
            index_cases[-1]["label"] = labels[labelled]
    files[GOLDEN_INDEX] = json.dumps({"rtol": rtol, "atol": max(recorded),
                                      "cases": index_cases}).encode()
    return files
