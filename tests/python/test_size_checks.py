"""Exports are checked across their dynamic sizes (torchship.size_checks): every size the
manifest leaves free is run at the smallest size allowed, next to the example's and at the
largest allowed up to twice the example's, compared with Python, and kept as labelled golden
cases that `torchship check` reruns; a disagreement refuses the export naming the size and the
output."""

import json
import subprocess
import zipfile

import pytest
import torch
from torch import Tensor, nn

import torchship
from torchship import aoti
from torchship.archive import GOLDEN_INDEX
from torchship.errors import ExportError
from torchship.size_checks import sizes_to_check


class Scale(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * 2 + x.sum(1, keepdim=True)


class SizeParity(nn.Module):
    """Takes a branch on its input's width: a trace keeps the example's."""

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] % 2 == 0:
            return x * 2
        return x * 3


def free_width_manifest(batch_dim: bool = False) -> torchship.Manifest:
    shape = [-1, -1] if batch_dim else [2, -1]
    return torchship.Manifest(inputs=[torchship.tensor_spec("x", "FP32", shape)],
                              batch_dim=batch_dim)


def golden_labels(path: str):
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(GOLDEN_INDEX.split("/", 1)[1]))
        index = json.loads(archive.read(name))
    return [case.get("label", "") for case in index["cases"]]


def test_which_sizes_are_checked():
    assert sizes_to_check(224, 17, None) == [17, 225, 448]  # smallest, odd neighbour, 2x
    assert sizes_to_check(8, 1, 4096) == [1, 9, 16]
    assert sizes_to_check(1, 1, 4096) == [2]  # a batch of 1: the smallest is the example
    assert sizes_to_check(7, 3, 7) == [3, 6]  # the example is the largest allowed


def test_a_scripted_archive_keeps_its_size_checks_as_golden_cases(tmp_path, cli):
    path = str(tmp_path / "scale.pt")
    result = torchship.export(Scale(), (torch.rand(2, 8),), path, method="script",
                              manifest=free_width_manifest(batch_dim=True))
    assert golden_labels(path) == ["", "the batch size = 1", "the batch size = 3",
                                   "the batch size = 4", "input 'x' dim 1 = 1",
                                   "input 'x' dim 1 = 9", "input 'x' dim 1 = 16"]
    assert ("checked at other sizes than the example's, kept as golden cases: the batch size = "
            "1; the batch size = 3; the batch size = 4; input 'x' dim 1 = 1; input 'x' dim 1 = "
            "9; input 'x' dim 1 = 16") in result.notes
    check = subprocess.run([cli, "check", path], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "golden case 0\n" in check.stdout
    assert "golden case 5 (input 'x' dim 1 = 9)\n" in check.stdout
    assert "PASS: 7 golden cases" in check.stdout


def test_a_trace_that_froze_a_size_is_refused_naming_it(tmp_path):
    with pytest.raises(ExportError) as refused:
        torchship.export(SizeParity(), (torch.ones(2, 8),), str(tmp_path / "parity.pt"),
                         manifest=free_width_manifest())
    assert ("[frozen-branch] the trace computes something else than the Python module at input "
            "'x' dim 1 = 1 (the example's is 8): output: max abs difference 1: tracing froze a "
            "size or a data-dependent branch") in str(refused.value)
    # Scripted, the branch is kept and every size agrees.
    path = str(tmp_path / "parity_scripted.pt")
    torchship.export(SizeParity(), (torch.ones(2, 8),), path, method="script",
                     manifest=free_width_manifest())
    assert golden_labels(path)[1:] == ["input 'x' dim 1 = 1", "input 'x' dim 1 = 9",
                                       "input 'x' dim 1 = 16"]


def test_fixed_sizes_add_no_cases(tmp_path):
    path = str(tmp_path / "fixed.pt")
    manifest = torchship.Manifest(inputs=[torchship.tensor_spec("x", "FP32", [2, 8])])
    result = torchship.export(Scale(), (torch.rand(2, 8),), path, method="script",
                              manifest=manifest)
    assert golden_labels(path) == [""]
    assert not any("other sizes" in note for note in result.notes)


@pytest.mark.skipif(not aoti.available(), reason="no torch.export + AOTInductor packaging")
def test_a_package_wrong_at_another_size_is_refused_naming_it(tmp_path, monkeypatch):
    # A compiled package that is right at the example's size only, as AOTInductor's code once
    # was for MaxPool2d(ceil_mode=True) at odd sizes.
    load = torch._inductor.aoti_load_package

    def wrong_elsewhere(*args, **kwargs):
        compiled = load(*args, **kwargs)

        def run(x):
            out = compiled(x)
            return out if x.shape[1] == 8 else out + 1

        return run

    monkeypatch.setattr(torch._inductor, "aoti_load_package", wrong_elsewhere)
    path = tmp_path / "wrong.pt2"
    with pytest.raises(ExportError) as refused:
        torchship.export(Scale(), (torch.rand(2, 8),), str(path), format="aoti",
                         manifest=free_width_manifest())
    message = str(refused.value)
    assert message.startswith("the compiled package computes something else than the Python "
                              "module at input 'x' dim 1 = ")
    assert "(the example's is 8): output: max abs difference 1; AOTInductor's code is wrong at " \
           "that size: give the dimension a fixed size in the manifest's input spec, or export " \
           "as TorchScript" in message
    assert not path.exists()


@pytest.mark.skipif(not aoti.available(), reason="no torch.export + AOTInductor packaging")
def test_a_package_keeps_its_size_checks_within_its_ranges(tmp_path, cli):
    path = str(tmp_path / "scale.pt2")
    result = torchship.export(Scale(), (torch.rand(2, 8),), path, format="aoti",
                              manifest=free_width_manifest(batch_dim=True))
    ranges = result.manifest["export"]["dynamic_dims"]["x"]
    low = ranges["1"]["min"]
    assert golden_labels(path) == ["", "the batch size = 1", "the batch size = 3",
                                   "the batch size = 4", f"input 'x' dim 1 = {low}",
                                   "input 'x' dim 1 = 9", "input 'x' dim 1 = 16"]
    check = subprocess.run([cli, "check", path], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "PASS: 7 golden cases" in check.stdout
