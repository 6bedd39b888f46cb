"""The doctor names the right catalogue entry for every pitfall that still fails on this
PyTorch, and the pitfalls the article lists that PyTorch has since fixed now script."""

import os
import subprocess
import sys

import pytest
import torch

import pitfall_cases as cases
from torchship.doctor import CATALOGUE, check_module, diagnose

HERE = os.path.dirname(os.path.abspath(__file__))
CASES_FILE = os.path.join(HERE, "pitfall_cases.py")


def source_line_of(text: str) -> int:
    with open(CASES_FILE) as f:
        for number, line in enumerate(f, start=1):
            if text in line:
                return number
    raise AssertionError(text)


@pytest.mark.parametrize("module,pitfall,line", [
    (cases.NoneThenTensor, "none-then-tensor", "            y = x"),
    (cases.IntFloatBranches, "int-float-branches", None),
    (cases.EmptyList, "empty-container", "sizes.append(x.size(i))"),
    (cases.EmptyDict, "empty-container", 'counts["rows"] = x.size(0)'),
    (cases.OptionalUnrefined, "optional-unrefined", "return x + bias"),
    (cases.TensorConstructor, "tensor-constructor", "torch.Tensor([1.0, 2.0])"),
    (cases.GlobalVariable, "global-variable", "return x * SCALE[0]"),
    (cases.TupleSlice, "tuple-slice", "return outputs[: self.n]"),
])
def test_doctor_names_the_pitfall_and_the_line(module, pitfall, line):
    diagnosis = check_module(module())
    assert diagnosis is not None, f"{module.__name__} scripts on torch {torch.__version__}"
    assert diagnosis.pitfall is not None and diagnosis.pitfall.id == pitfall
    if line is not None:
        assert diagnosis.location == f"{CASES_FILE}:{source_line_of(line)}"
        assert line.strip() in diagnosis.source_line
    text = str(diagnosis)
    assert f"[{pitfall}]" in text and "fix: " in text


def test_untyped_argument_fails_when_called_and_the_doctor_explains_it():
    scripted = torch.jit.script(cases.UntypedArgument())
    with pytest.raises(RuntimeError) as error:
        scripted(torch.ones(2), 3)
    diagnosis = diagnose(error.value)
    assert diagnosis.pitfall.id == "untyped-argument"
    assert "k: int" in diagnosis.pitfall.fix


@pytest.mark.parametrize("module", [cases.TypingList, cases.UsesMath, cases.ClampTensor,
                                    cases.MaskedScalar])
def test_pitfalls_fixed_since_the_article_now_script(module):
    """The article (PyTorch 1.3) lists these as failures; on this PyTorch they compile and run
    like the Python code (docs/pitfalls.md says so per entry)."""
    scripted = torch.jit.script(module())
    x = torch.tensor([-1.0, 2.0, 3.0])
    argument = [x] if module is cases.TypingList else x
    assert torch.equal(scripted(argument.copy() if isinstance(argument, list) else x.clone()),
                       module()(argument if isinstance(argument, list) else x.clone()))


def test_every_catalogue_entry_has_a_fix_and_a_unique_id():
    ids = [entry.id for entry in CATALOGUE]
    assert len(ids) == len(set(ids))
    assert all(entry.fix and entry.title for entry in CATALOGUE)


def test_doctor_command_line():
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "..", "..", "python"))
    failing = subprocess.run([sys.executable, "-m", "torchship", "doctor",
                              f"{CASES_FILE}:TensorConstructor"], capture_output=True, text=True,
                             env=env)
    assert failing.returncode == 1
    assert "[tensor-constructor]" in failing.stdout and "torch.tensor(" in failing.stdout
    clean = subprocess.run([sys.executable, "-m", "torchship", "doctor",
                            f"{CASES_FILE}:UsesMath"], capture_output=True, text=True, env=env)
    assert clean.returncode == 0
    assert clean.stdout.strip().endswith("UsesMath: scripts cleanly")


# torch.export's pitfalls (torch >= 2.1; the suite also runs on 1.13, which has no torch.export).
needs_export = pytest.mark.skipif(not hasattr(torch, "export") or
                                  not hasattr(torch.export, "Dim"),
                                  reason=f"torch {torch.__version__} has no torch.export")


@needs_export
@pytest.mark.parametrize("module,strict,pitfall,line", [
    (cases.DataDependentBranch, False, "export-data-dependent", "if x.sum() > 0:"),
    (cases.NumpyInForward, False, "export-unsupported", "torch.from_numpy(x.numpy() * 2)"),
    (cases.FileInForward, True, "export-unsupported", "with open(__file__) as f:"),
])
def test_doctor_explains_torch_export_failures(module, strict, pitfall, line):
    from torchship.doctor import check_export
    diagnosis = check_export(module(), (torch.randn(3),), strict=strict)
    assert diagnosis is not None, f"{module.__name__} exports on torch {torch.__version__}"
    assert diagnosis.pitfall is not None and diagnosis.pitfall.id == pitfall
    assert diagnosis.location == f"{CASES_FILE}:{source_line_of(line)}"
    assert line in diagnosis.source_line
    text = str(diagnosis)
    assert f"[{pitfall}]" in text and "fix: " in text


@needs_export
def test_doctor_repeats_torch_exports_suggested_dim():
    from torch.export import Dim

    from torchship.doctor import check_export
    diagnosis = check_export(cases.ReshapeByTwo(), (torch.randn(4, 3),),
                             dynamic_shapes=({0: Dim("batch", min=1, max=64)},))
    assert diagnosis is not None and diagnosis.pitfall.id == "export-constraints"
    assert "Dim(" in diagnosis.suggestion
    text = str(diagnosis)
    assert "suggested by torch.export:" in text and "Dim('_batch'" in text


@needs_export
def test_doctor_names_the_library_line_not_the_callers_wrapper():
    """A branch inside torchvision (its batched NMS tests whether any box is left): the
    diagnosis names torchvision's line, the innermost frame outside torch, not the wrapper that
    called the detector (torchvision's folder shares its first letters with torch's)."""
    import torchvision
    from torchvision.ops import boxes as box_ops

    from torchship.doctor import check_export

    class FirstImage(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.detector = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
                weights=None, weights_backbone=None)

        def forward(self, image):
            return self.detector([image])[0]["boxes"]

    torch.manual_seed(0)
    diagnosis = check_export(FirstImage().eval(), (torch.rand(3, 320, 320),))
    assert diagnosis is not None and diagnosis.pitfall.id == "export-data-dependent"
    assert diagnosis.location.startswith(box_ops.__file__ + ":")
    assert "boxes.numel()" in diagnosis.source_line


def test_export_catalogue_ids_are_unique_and_distinct_from_torchscript_ones():
    from torchship.doctor import EXPORT_CATALOGUE
    ids = [entry.id for entry in CATALOGUE + EXPORT_CATALOGUE]
    assert len(ids) == len(set(ids))
    assert all(entry.fix and entry.title for entry in EXPORT_CATALOGUE)
