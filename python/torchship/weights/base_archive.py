"""An archive written by torchship.export, read back for a weights update: its forms (one, or
each of an archive of every form), and in each the manifest, the weights index and the golden
cases."""

import io
import json
import zipfile
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..archive import GOLDEN_INDEX, MANIFEST_FILE
from ..errors import ExportError
from ..tree import from_tree, tensor_from_npy
from ..weights_index import INDEX_FILE

FORM_RECORDS = {"forms/torchscript.pt": "torchscript", "forms/aoti.pt2": "aoti",
                "forms/openvino.ov": "openvino"}


class ArchiveForm:
    """One form's archive: a zip in PyTorch's layout (one root folder)."""

    def __init__(self, format: str, data: bytes, origin: str):
        self.format, self.data, self.origin = format, data, origin
        self.zip = zipfile.ZipFile(io.BytesIO(data))
        self.root = self.zip.namelist()[0].split("/", 1)[0]

    def extra(self, name: str) -> Optional[bytes]:
        """An extra file: under extra/ in a TorchScript archive, under the root in a package."""
        for record in (f"{self.root}/extra/{name}", f"{self.root}/{name}"):
            try:
                return self.zip.read(record)
            except KeyError:
                continue
        return None

    def record(self, name: str) -> bytes:
        return self.zip.read(f"{self.root}/{name}")

    def json(self, name: str) -> Dict[str, Any]:
        data = self.extra(name)
        if data is None:
            raise ExportError(f"{self.origin} has no {name}: it was exported by an older "
                              "torchship; export it again to update its weights")
        return json.loads(data)

    def golden(self) -> Tuple[float, List[Tuple[Tuple[Any, ...], str]]]:
        """The golden index's rtol and each case's inputs with its label."""
        index = self.json(GOLDEN_INDEX)

        def load(name: str) -> torch.Tensor:
            return tensor_from_npy(self.extra(name))

        cases = [(tuple(from_tree(tree, load) for tree in case["inputs"]), case.get("label", ""))
                 for case in index["cases"]]
        return index["rtol"], cases


def _format_of(names: List[str], root: str) -> Optional[str]:
    if any(name.startswith(f"{root}/code/") for name in names):
        return "torchscript"
    if any(name.startswith(f"{root}/data/aotinductor/") for name in names):
        return "aoti"
    if f"{root}/openvino/model.xml" in names:
        return "openvino"
    return None


def read_forms(path: str) -> List[ArchiveForm]:
    """The forms of the archive `path`, in the order it holds them."""
    try:
        with open(path, "rb") as file:
            data = file.read()
        top = zipfile.ZipFile(io.BytesIO(data))
    except (OSError, zipfile.BadZipFile) as error:
        raise ExportError(f"cannot read the archive {path}: {error}") from error
    names = top.namelist()
    root = names[0].split("/", 1)[0] if names else ""
    nested = [(record, FORM_RECORDS[record[len(root) + 1:]]) for record in names
              if record[len(root) + 1:] in FORM_RECORDS]
    if nested:
        return [ArchiveForm(form, top.read(record), f"{path} ({form} form)")
                for record, form in nested]
    form = _format_of(names, root)
    if form is None:
        raise ExportError(f"{path} is not a torchship archive (no TorchScript code, "
                          "AOTInductor model or OpenVINO IR)")
    return [ArchiveForm(form, data, path)]


def manifest_of(form: ArchiveForm) -> Dict[str, Any]:
    return form.json(MANIFEST_FILE)


def index_of(form: ArchiveForm) -> Dict[str, Any]:
    return form.json(INDEX_FILE)
