"""The .pt2 package: PyTorch's PT2 archive, a zip whose entries share one root folder, with each
compiled model under <root>/data/aotinductor/<name>/ ("model" is the one a plain loader runs).
torchship adds the manifest as <root>/extra/torchship.json and the golden vectors under
<root>/torchship/golden/ (not under extra/: torch's load_pt2 decodes every extra file as UTF-8
text, and .npy files are not). Compiling programs into one, reading its compiled files, adding
files, removing models, and the sizes the compiled code accepts."""

import json
import os
import re
import zipfile
from typing import Any, Dict, List, Tuple

import torch

from .cpu_targets import INVALID_ISA


def compile_package(path: str, programs: Dict[str, Any], options: Dict[str, Any]) -> None:
    """Compiles each exported program and packages them under their names ("model" is the one a
    plain loader runs)."""
    if len(programs) == 1:
        torch._inductor.aoti_compile_and_package(programs["model"], package_path=path,
                                                 inductor_configs=options)
        return
    from torch._inductor.package import package_aoti
    files = {}
    for name, program in programs.items():
        try:
            graph = program.module(check_guards=False)
        except TypeError:  # before 2.9 the module had no guards to skip
            graph = program.module()
        args, kwargs = program.example_inputs
        files[name] = torch._inductor.aot_compile(
            graph, args, kwargs, options={**options, "aot_inductor.package": True})
    package_aoti(path, files)


def compiled_files(path: str, suffix: str) -> List[str]:
    """The text of the compiled model's files in the package whose names end with `suffix`."""
    with zipfile.ZipFile(path) as archive:
        return [archive.read(name).decode("utf-8", "replace") for name in archive.namelist()
                if "/data/aotinductor/model/" in name and name.endswith(suffix)]


_BOUND = re.compile(r'input_handles\[(\d+)\]: dim value is too (small|large) at (\d+), "\s*'
                    r'<< "expected (?:it )?to be [<>]= (\d+)')


def compiled_bounds(path: str) -> Dict[Tuple[int, int], Dict[str, int]]:
    """The sizes the compiled code accepts per (flat input, dim), from the input checks
    AOTInductor generates (run when AOTI_RUNTIME_CHECK_INPUTS is set, as torchship sets it).
    A Dim's upper bound can come out narrower than asked where a kernel choice depends on the
    size; the lower bound check is not generated (see inductor_setup.inductor_options)."""
    bounds: Dict[Tuple[int, int], Dict[str, int]] = {}
    for source in compiled_files(path, "wrapper.cpp"):
        for handle, side, dim, value in _BOUND.findall(source):
            key = "min" if side == "small" else "max"
            bounds.setdefault((int(handle), int(dim)), {})[key] = int(value)
    return bounds


def vec_isa(path: str) -> str:
    """AOTI_CPU_ISA of the compiled wrapper, as AOTInductor records it."""
    for text in compiled_files(path, "_metadata.json"):
        isa = json.loads(text).get("AOTI_CPU_ISA")
        if isa is not None:
            return isa or INVALID_ISA
    return INVALID_ISA


def add_files(path: str, files: Dict[str, bytes]) -> None:
    """Appends `files` under the package's root folder."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as archive:
        root = archive.namelist()[0].split("/", 1)[0]
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(f"{root}/{name}", (1980, 1, 1, 0, 0, 0)), data)


def remove_models(path: str, names: List[str]) -> None:
    """Rewrites the package without the named models' folders."""
    folders = tuple(f"/data/aotinductor/{name}/" for name in names)
    partial = path + ".partial"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(partial, "w") as target:
        for info in source.infolist():
            if not any(folder in info.filename for folder in folders):
                target.writestr(info, source.read(info))
    os.replace(partial, path)
