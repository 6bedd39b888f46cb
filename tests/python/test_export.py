"""torchship.export: eval mode, no_grad, the three methods, the manifest and golden vectors
inside an archive that plain torch.jit.load still opens, and refusal of exports that lie."""

import json
import warnings
import zipfile
from typing import List

import pytest
import torch
from torch import Tensor, nn

import torchship
from torchship.torchscript.compat import torchscript_support
from torchship.torchscript.precision import bf16_convolution_problem


def decisions(result: torchship.ExportResult) -> List[str]:
    """The notes about this export, without the one about TorchScript on this torch."""
    return [note for note in result.notes if "deprecates TorchScript" not in note]


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


def finding_ids(error) -> set:
    return {finding.id for finding in error.value.findings}


def test_the_articles_my_abs_trace_is_refused(tmp_path):
    # Traced on torch.tensor(0) as in the article: the trace returns x for negative inputs too.
    # The exporter derives other inputs (random, negated, zeros) and catches it without help.
    with pytest.raises(torchship.ExportError) as error:
        torchship.export(MyAbs(), torch.tensor(0), str(tmp_path / "abs.pt"))
    assert finding_ids(error) == {"tracer-warning", "frozen-branch"}
    message = str(error.value)
    assert "[frozen-branch] on input 0 with negative values, the trace computes something " \
           "else than the Python module" in message
    assert "method='script'" in message
    assert f"{__file__}:" in message  # the tracer warning names the source line
    # Allowing the warning does not allow the wrong numbers.
    with pytest.raises(torchship.ExportError) as error:
        torchship.export(MyAbs(), torch.tensor(0), str(tmp_path / "abs.pt"),
                         allow=["tracer-warning"])
    assert finding_ids(error) == {"frozen-branch"}
    # User-given golden inputs are compared too.
    with pytest.raises(torchship.ExportError, match="on golden case 1"):
        torchship.export(MyAbs(), torch.tensor([1.0]), str(tmp_path / "abs.pt"),
                         golden_inputs=[(torch.tensor([-1.0]),)], allow=["tracer-warning"])
    result = torchship.export(MyAbs(), torch.tensor(0), str(tmp_path / "abs.pt"),
                              method="script", golden_inputs=[(torch.tensor([-1.0]),)])
    assert torch.equal(result.module(torch.tensor([-3.0])), torch.tensor([3.0]))


class ArticleClassifier(nn.Module):
    """The article's ResNet34 classifier, written the article's way: normalize() inside the
    trace, so the mean and std become constants on the export device."""

    def __init__(self):
        super().__init__()
        import torchvision
        self.resnet = torchvision.models.resnet34(weights=None)

    def forward(self, image):
        import torchvision.transforms.functional as F
        x = image.permute(2, 0, 1).float().div(255)
        x = F.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        return self.resnet(x.unsqueeze(0))


def test_device_literals_frozen_by_tracing_are_refused(tmp_path):
    image = torch.randint(0, 256, (224, 224, 3), dtype=torch.uint8)
    with pytest.raises(torchship.ExportError) as error:
        torchship.export(ArticleClassifier().eval(), image, str(tmp_path / "c.pt"),
                         allow=["tracer-warning"])
    assert finding_ids(error) == {"device-literal"}
    message = str(error.value)
    assert "names device(s) cpu" in message
    assert "tracing captured 2 tensor constant(s) (shapes [3], [3])" in message
    assert "register_buffer" in message


def test_train_mode_is_a_note_and_unknown_allow_ids_are_rejected(tmp_path):
    with pytest.warns(torchship.ExportWarning, match=r"\[train-mode\] 1 submodule\(s\)"):
        result = torchship.export(Scale().train(), torch.ones(2), str(tmp_path / "s.pt"))
    assert [f.id for f in result.findings] == ["train-mode"]
    with pytest.raises(torchship.ExportError, match="allow: unknown check id"):
        torchship.export(Scale(), torch.ones(2), str(tmp_path / "s.pt"), allow=["frozen"])


def test_tracer_findings_point_at_the_callers_line_and_tell_assertions_apart(tmp_path):
    """torchvision's ViT asserts its input's size with torch._assert: torch warns inside its own
    files; the finding names torchvision's line. With sizes the manifest fixes, the assertion
    holds for every input allowed: reported, not refused."""
    import inspect
    import torchvision
    from torchvision.models import vision_transformer

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1,
                                               num_heads=2, hidden_dim=16, mlp_dim=32,
                                               num_classes=4).eval()
    x = torch.rand(1, 3, 32, 32)
    source, first = inspect.getsourcelines(vision_transformer.VisionTransformer._process_input)
    assert_line = first + next(i for i, line in enumerate(source)
                               if "torch._assert(h == self.image_size" in line)
    with pytest.raises(torchship.ExportError) as refused:
        torchship.export(vit, x, str(tmp_path / "vit.pt"))
    findings = [f for f in refused.value.findings if f.id == "tracer-warning"]
    assert [f.location for f in findings] == [f"{vision_transformer.__file__}:{assert_line}",
                                              f"{vision_transformer.__file__}:{assert_line + 1}"]
    assert findings[0].message == (
        "Converting a tensor to a Python number might cause the trace to be incorrect: "
        "`torch._assert(h == self.image_size, f\"Wrong image height! Expected "
        "{self.image_size} but got {h}!\")`: an assertion the trace cannot keep, and the "
        "manifest leaves sizes free: the archive would run inputs the Python module refuses")
    fixed = torchship.Manifest(inputs=[torchship.tensor_spec("x", "FP32", [1, 3, 32, 32])])
    with pytest.warns(torchship.ExportWarning, match="it holds for every input the manifest "
                                                     "allows"):
        result = torchship.export(vit, x, str(tmp_path / "vit.pt"), manifest=fixed)
    assert [f.fatal for f in result.findings if f.id == "tracer-warning"] == [False, False]


class BranchOnValue(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # the line the finding names
            return x * 2
        return x


def test_a_value_dependent_branch_is_named_at_its_line(tmp_path):
    import inspect
    source, first = inspect.getsourcelines(BranchOnValue.forward)
    line = first + next(i for i, text in enumerate(source) if "x.sum() > 0" in text)
    with pytest.raises(torchship.ExportError) as refused:
        torchship.export(BranchOnValue(), torch.ones(3), str(tmp_path / "b.pt"))
    tracer = [f for f in refused.value.findings if f.id == "tracer-warning"]
    assert [f.location for f in tracer] == [f"{__file__}:{line}"]
    assert tracer[0].message == ("Converting a tensor to a Python boolean might cause the trace "
                                 "to be incorrect: `if x.sum() > 0:  # the line the finding "
                                 "names`")
    assert "make this code independent of tensor values" in tracer[0].fix


class ArticleMyModule(nn.Module):
    """The article's MyModule: a scripted shape check around a traced ResNet."""

    def __init__(self):
        super().__init__()
        import torchvision
        self.resnet = torchvision.models.resnet18(weights=None)

    def forward(self, x):
        if x.shape[2] < 224 or x.shape[3] < 224:
            return torch.tensor(0)
        else:
            return self.resnet(x)


def test_the_articles_hybrid_module_exports_and_passes_every_check(tmp_path):
    torch.manual_seed(0)
    module = ArticleMyModule()
    x = torch.rand(1, 3, 224, 224)
    result = torchship.export(module, x, str(tmp_path / "hybrid.pt"), method="hybrid",
                              trace=["resnet"], golden_inputs=[(torch.rand(1, 3, 100, 100),)])
    assert [f.id for f in result.findings if f.fatal] == []  # only the train-mode note
    assert torch.equal(result.module(torch.rand(1, 3, 64, 64)), torch.tensor(0))  # branch kept
    assert isinstance(result.module.resnet, torch.jit.ScriptModule)


class UsesTensorConstructor(nn.Module):
    def forward(self, x):
        return x + torch.Tensor([1.0, 2.0])


def test_hybrid_without_a_list_traces_what_does_not_script(tmp_path):
    xs = [torch.ones(2), torch.full((2,), 3.0)]
    result = torchship.export(Shapes(), (xs,), str(tmp_path / "auto.pt"), method="hybrid")
    assert decisions(result) == ["hybrid: scripting failed in submodule(s) inner; traced them "
                                 "and scripted the rest"]
    assert torch.equal(result.module([]), torch.zeros(1))


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
    with pytest.raises(torchship.ExportError, match=r"\[tensor-constructor\]"):
        torchship.export(UsesTensorConstructor(), torch.ones(2), str(tmp_path / "x.pt"),
                         method="script")
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


class TinyClassifier(nn.Module):
    """uint8 B x 8 x 8 x 1 images -> B x 4 logits; preprocessing outside the network."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(8 * 8 * 8, 4))

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images.permute(0, 3, 1, 2).float().div(255.0))


def test_reduced_precision_is_recorded_and_measured_against_fp32(tmp_path):
    model = TinyClassifier().eval()
    batches = [torch.randint(0, 256, (16, 8, 8, 1), dtype=torch.uint8) for _ in range(5)]
    manifest = torchship.Manifest(task="classification")
    problem = bf16_convolution_problem()
    if problem:  # torch 1.13 on a CPU without AVX-512: bf16 export says why, in one line
        with pytest.raises(torchship.ExportError) as error:
            torchship.export(model, (batches[0],), str(tmp_path / "bf16.pt"), manifest=manifest,
                             precision="bf16")
        assert str(error.value) == (
            f"precision='bf16': torch {torch.__version__} cannot run the pipeline in bf16 on "
            f"this CPU ({problem}); this torch has no bf16 convolution kernel for this CPU "
            "(torch 2.x has, and so has 1.13 on CPUs with AVX-512)")
    for precision in ("int8",) if problem else ("bf16", "int8"):
        path = str(tmp_path / f"{precision}.pt")
        result = torchship.export(model, (batches[0],), path, manifest=manifest,
                                  golden_inputs=[(batches[1],)], precision=precision,
                                  calibration=[(b,) for b in batches], quantize="net")
        assert result.manifest["precision"] == precision
        report = result.precision_report
        assert report == result.manifest["export"]["precision_report"]
        assert report["cases"] == 2
        assert 0 < report["max_abs_error"]["output"] < 0.5
        assert 0.8 <= report["top1_agreement"] <= 1.0
        loaded = torch.jit.load(path)
        assert loaded(batches[2]).dtype == torch.float32  # outputs stay fp32
        graph = str(loaded.inlined_graph)
        assert ("quantized::" in graph) == (precision == "int8")
        # Tracing recorded autocast's casts: aten::to(..., 15), 15 being ScalarType BFloat16.
        assert ("prim::Constant[value=15]" in graph) == (precision == "bf16")
    assert "quantized_engine" in result.manifest["export"]


def test_reduced_precision_arguments_are_explained(tmp_path):
    model = TinyClassifier().eval()
    example = torch.zeros(2, 8, 8, 1, dtype=torch.uint8)
    path = str(tmp_path / "x.pt")
    cases = [
        (dict(precision="fp16"), "precision must be one of fp32, bf16, int8, got 'fp16'"),
        (dict(precision="bf16", method="hybrid"),
         "precision='bf16' needs method 'trace': autocast's casts are recorded by tracing the "
         "whole pipeline"),
        (dict(precision="int8", method="script", calibration=[(example,)]),
         "precision='int8' needs method 'trace' or 'hybrid': FX quantization produces modules "
         "that TorchScript cannot script as a whole"),
        (dict(precision="int8"),
         "precision='int8' needs calibration=[...]: argument tuples (a few hundred "
         "representative inputs) to measure activation ranges on"),
    ]
    for kwargs, message in cases:
        with pytest.raises(torchship.ExportError) as error:
            torchship.export(model, (example,), path, **kwargs)
        assert str(error.value) == message


def test_torchscript_deprecation_is_one_note_not_a_warning_per_call(tmp_path):
    """torch >= 2.10 warns on every torch.jit call; export says it once, as a note."""
    support = torchscript_support()
    assert support.available
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = torchship.export(Scale().eval(), torch.ones(3), str(tmp_path / "a.pt"))
        second = torchship.export(Scale().eval(), torch.ones(3), str(tmp_path / "b.pt"))
    leaked = [str(w.message) for w in caught if "torch.jit" in str(w.message)]
    assert leaked == []
    if support.deprecation is None:  # torch 1.13
        assert first.notes == [] and second.notes == []
        return
    note = (f"torch {torch.__version__} deprecates TorchScript; this TorchScript archive still "
            "loads in libtorch and torchship; PyTorch's successor for C++ deployment is "
            "torch.export + AOTInductor (.pt2)")
    assert first.notes == [note] and second.notes == [note]
    said = [w for w in caught if issubclass(w.category, torchship.ExportWarning)]
    assert len(said) <= 1  # once per process (an earlier test may have said it already)


def test_a_torch_that_refuses_torchscript_gets_one_line(tmp_path, monkeypatch):
    """A torch may turn TorchScript's deprecation into an error; export detects it by trying."""
    def refuse(*args, **kwargs):
        raise RuntimeError("TorchScript is deprecated and disabled in this build; set "
                           "TORCH_ESCAPE_HATCH=1 before importing torch to use it\nmore detail")

    monkeypatch.setattr(torch.jit, "script", refuse)
    torchscript_support.cache_clear()
    try:
        with pytest.raises(torchship.ExportError) as error:
            torchship.export(Scale().eval(), torch.ones(3), str(tmp_path / "a.pt"))
    finally:
        torchscript_support.cache_clear()
    assert str(error.value) == (
        f"torch {torch.__version__} refuses TorchScript (\"TorchScript is deprecated and "
        "disabled in this build; set TORCH_ESCAPE_HATCH=1 before importing torch to use it\"): "
        "a TorchScript archive needs a torch that still writes it (an earlier release, or the "
        "opt-out that message names), or PyTorch's successor, torch.export + AOTInductor (.pt2)")
    assert not (tmp_path / "a.pt").exists()


def test_the_output_comparison_catches_shape_dtype_length_key_and_value_differences():
    from torchship.tree import first_mismatch
    x = torch.ones(2, 3)
    assert first_mismatch(x, x.clone(), 1e-4, None) is None
    assert first_mismatch([x, {"a": x}], (x, {"a": x}), 1e-4, None) is None  # tuples as lists
    assert first_mismatch(x, torch.ones(1, 3), 1e-4, None) == \
        "output: expected torch.float32 [2, 3], got torch.float32 [1, 3]"  # broadcastable
    assert first_mismatch(x, x.double(), 1e-4, None) == \
        "output: expected torch.float32 [2, 3], got torch.float64 [2, 3]"
    assert first_mismatch([x, x], [x], 1e-4, None) == "output: expected a sequence of 2"
    assert first_mismatch({"a": x}, {"b": x}, 1e-4, None) == "output: expected keys ['a']"
    assert first_mismatch([x, "cat"], [x, "dog"], 1e-4, None) == \
        "output[1]: expected 'cat', got 'dog'"
    assert first_mismatch({"a": [x, x + 1]}, {"a": [x, x]}, 1e-4, None) == \
        "output.a[1]: max abs difference 1"
    assert first_mismatch(torch.tensor([1, 2]), torch.tensor([1, 3]), 1e-4, None) == \
        "output: values differ"
