"""torchship.export: eval mode, no_grad, the three methods, the manifest and golden vectors
inside an archive that plain torch.jit.load still opens, and refusal of exports that lie."""

import json
import zipfile
from typing import List

import pytest
import torch
from torch import Tensor, nn

import torchship


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("factor", torch.tensor(2.0))
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(x) * self.factor


class Shapes(nn.Module):
    """A wrapper with control flow around a submodule that scripting could not compile."""

    def __init__(self):
        super().__init__()
        self.inner = Untypeable()

    def forward(self, xs: List[Tensor]) -> Tensor:
        if len(xs) == 0:
            return torch.zeros(1)
        return self.inner(torch.stack(xs))


class Untypeable(nn.Module):
    def forward(self, x):
        add_one = lambda t: t + 1  # noqa: E731 - scripting rejects lambdas, tracing does not
        return add_one(x.sum(dim=0))


def my_abs(x):
    if x.max() >= 0:
        return x
    return -x


class MyAbs(nn.Module):
    def forward(self, x):
        return my_abs(x)


def extra_files(path) -> List[str]:
    with zipfile.ZipFile(path) as archive:
        return sorted(name.split("/extra/", 1)[1] for name in archive.namelist()
                      if "/extra/" in name)


def test_export_switches_to_eval_and_records_everything(tmp_path):
    module = Scale().train()
    path = tmp_path / "scale.pt"
    manifest = torchship.Manifest(name="scale", inputs=[torchship.tensor_spec("x", "FP32", [-1])])
    result = torchship.export(module, torch.ones(4), str(path), manifest=manifest)
    assert not module.training  # dropout off: the export is deterministic
    assert result.max_errors == {"output": 0.0}

    names = extra_files(path)
    assert "torchship.json" in names
    assert "torchship/golden/index.json" in names
    plain = torch.jit.load(str(path))  # plain TorchScript still opens it
    assert torch.equal(plain(torch.ones(3)), torch.full((3,), 2.0))

    loaded, stored = torchship.load(str(path))
    assert stored["format_version"] == 1
    assert stored["name"] == "scale"
    assert stored["export"]["method"] == "trace"
    assert stored["export"]["torch_version"] == torch.__version__
    assert stored["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1]}]


def test_golden_vectors_hold_the_exported_outputs(tmp_path):
    path = tmp_path / "scale.pt"
    torchship.export(Scale(), torch.arange(3.0), str(path),
                     golden_inputs=[(torch.full((2,), -1.0),)])
    with zipfile.ZipFile(path) as archive:
        prefix = archive.namelist()[0].split("/")[0] + "/extra/"
        index = json.loads(archive.read(prefix + "torchship/golden/index.json"))
        assert len(index["cases"]) == 2
        output = index["cases"][1]["output"]
        assert output["datatype"] == "FP32" and output["shape"] == [2]
        tensor = torchship.tree.tensor_from_npy(archive.read(prefix + output["npy"]))
    assert torch.equal(tensor, torch.full((2,), -2.0))


def test_trace_that_froze_a_branch_is_refused(tmp_path):
    # The article's my_abs: traced on a non-negative sample, the trace returns x for negatives.
    with pytest.raises(torchship.ExportError, match="computes other values than the Python"):
        torchship.export(MyAbs(), torch.tensor([1.0]), str(tmp_path / "abs.pt"),
                         golden_inputs=[(torch.tensor([-1.0]),)])
    result = torchship.export(MyAbs(), torch.tensor([1.0]), str(tmp_path / "abs.pt"),
                              method="script", golden_inputs=[(torch.tensor([-1.0]),)])
    assert torch.equal(result.module(torch.tensor([-3.0])), torch.tensor([3.0]))


def test_hybrid_traces_named_submodules_and_scripts_the_rest(tmp_path):
    module = Shapes()
    with pytest.raises(Exception):
        torch.jit.script(module)
    xs = [torch.ones(2), torch.full((2,), 3.0)]
    result = torchship.export(module, (xs,), str(tmp_path / "hybrid.pt"), method="hybrid",
                              trace=["inner"])
    assert isinstance(module.inner, Untypeable)  # the caller's module is left intact
    assert torch.equal(result.module([]), torch.zeros(1))  # control flow survived
    assert torch.equal(result.module(xs), torch.full((2,), 5.0))
    assert result.manifest["export"]["method"] == "hybrid"


def test_bad_arguments_are_explained(tmp_path):
    with pytest.raises(torchship.ExportError, match="method must be one of trace, script, hybrid"):
        torchship.export(Scale(), torch.ones(1), str(tmp_path / "x.pt"), method="compile")
    with pytest.raises(torchship.ExportError, match="hybrid export needs trace="):
        torchship.export(Shapes(), ([torch.ones(1)],), str(tmp_path / "x.pt"), method="hybrid")
    with pytest.raises(torchship.ExportError, match="has no submodule 'nothing'"):
        torchship.export(Shapes(), ([torch.ones(1)],), str(tmp_path / "x.pt"), method="hybrid",
                         trace=["nothing"])
    with pytest.raises(ValueError, match="datatype must be one of"):
        torchship.export(Scale(), torch.ones(1), str(tmp_path / "x.pt"),
                         manifest=torchship.Manifest(inputs=[torchship.tensor_spec("x", "F32")]))


def test_article_pipelines_keep_constants_as_module_state(fixtures):
    """One archive serves every device: no tensor constant is baked into the graph."""
    import os
    for name in ("classifier.pt", "segmentation.pt"):
        module = torch.jit.load(os.path.join(fixtures, name))
        buffers = dict(module.named_buffers())
        assert "mean" in buffers and "std" in buffers
        assert "mean = self.mean" in module.code
        # Constants baked into forward may only be 0-dim scalars, which work on every device.
        _, constants = module.code_with_constants
        for value in constants.const_mapping.values():
            assert not isinstance(value, Tensor) or value.dim() == 0
