"""The common torchvision architectures through torchship.export with the default checks
(examples/torchvision/survey.py, random weights), as TorchScript: each exports, or its refusal
names torchvision's line and the fix, and the fix works. Their AOTInductor forms take minutes to
compile: the survey's figures are in docs/formats.md."""

import os
import sys

import pytest

import torchship

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "examples", "torchvision"))
torchvision = pytest.importorskip("torchvision")
if not hasattr(torchvision.models, "swin_t"):
    pytest.skip(f"torchvision {torchvision.__version__} has no Swin Transformer",
                allow_module_level=True)
import survey  # noqa: E402


@pytest.mark.parametrize("name", ["vit_b_16", "convnext_tiny", "efficientnet_b0",
                                  "mobilenet_v3_large"])
def test_traced_with_the_default_checks(tmp_path, name):
    notes = survey.export_one(name, "torchscript", "trace", str(tmp_path / f"{name}.pt"))
    if name == "vit_b_16":
        # Its torch._assert on the image size: kept out of the trace, and harmless with the
        # size the manifest fixes.
        assert len(notes) == 2 and all("vision_transformer.py:" in n and "torch._assert(" in n
                                       and "it holds for every input" in n for n in notes)
    else:
        assert notes == []


@pytest.mark.parametrize("name,line", [
    ("swin_t", "swin_transformer.py"),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", "detection/"),
])
def test_refused_traces_name_the_line_and_scripting_fixes_them(tmp_path, name, line):
    with pytest.raises(torchship.ExportError) as refused:
        survey.export_one(name, "torchscript", "trace", str(tmp_path / f"{name}.pt"))
    tracer = [f for f in refused.value.findings if f.id == "tracer-warning"]
    assert tracer and all(line in f.location for f in tracer[:2]), tracer[:2]
    assert "method='script'" in tracer[0].fix
    survey.export_one(name, "torchscript", "script", str(tmp_path / f"{name}.pt"))
