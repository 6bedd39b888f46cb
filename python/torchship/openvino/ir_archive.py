"""The OpenVINO archive: OpenVINO IR (model.xml and its weights, model.bin, as ov.save_model
writes them) with the call spec that rebuilds the pipeline's arguments and results from the IR's
flat tensors, the manifest and the golden vectors, in one zip laid out as PyTorch lays out its
archives (one root folder holding a "version" record), so that the C++ library reads every form
through one zip reader:

    <root>/version                      "3"
    <root>/openvino/model.xml           the IR's graph
    <root>/openvino/model.bin           its weights, full precision
    <root>/openvino/call_spec.json      [input spec, output spec] (torch.utils._pytree)
    <root>/extra/torchship.json         the manifest
    <root>/torchship/golden/...         the golden vectors
"""

import json
import zipfile
from typing import Dict

from ..archive import write_zip_archive

IR_FOLDER = "openvino/"
GRAPH = IR_FOLDER + "model.xml"
WEIGHTS = IR_FOLDER + "model.bin"
CALL_SPEC = IR_FOLDER + "call_spec.json"


def call_spec_file(in_spec: str, out_spec: str) -> bytes:
    """The call spec as the archive holds it: torch.export's (args, kwargs) input spec and its
    output spec, each as torch.utils._pytree.treespec_dumps writes it."""
    return json.dumps([in_spec, out_spec]).encode()


def write_ir_archive(path: str, files: Dict[str, bytes]) -> None:
    """Writes the archive `path` (named records, relative to its root folder)."""
    write_zip_archive(path, files)


def read_ir_archive(path: str) -> Dict[str, bytes]:
    """The archive's records by name relative to its root folder."""
    with zipfile.ZipFile(path) as archive:
        return {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()
                if "/" in name}
