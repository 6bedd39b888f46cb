"""torchship.export(format="aoti"): the .pt2 package holds the manifest and golden vectors where
C++ reads them, torch's own loader reproduces the golden vectors, the batch dimension is
dynamic, the CPU features are recorded, and what torch.export cannot do is refused with the
reason. Compiles two tiny packages, shared by the tests (AOTInductor takes seconds per model)."""

import io
import json
import re
import os
import sys
import zipfile

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import torchship
from torchship import aoti
from torchship.tree import first_mismatch, from_tree

if not aoti.available():
    pytest.skip(f"torch {torch.__version__} has no torch.export + AOTInductor packaging",
                allow_module_level=True)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class Nested(nn.Module):
    """A dict of a tuple and a list; `k` is not a tensor (baked in)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 3)

    def forward(self, x: Tensor, k: int):
        h = self.linear(x)
        return {"pair": (h.relu(), h.sum(1)), "parts": [x * k, (x > 0).sum(1)]}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).relu().mean((2, 3))


def test_a_failed_export_leaves_the_destination_as_it_was(tmp_path):
    # Refused after compiling (random numbers differ between eager and compiled runs): the
    # earlier file stays, and nothing of the attempt is left beside it.
    class Noisy(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x + torch.rand_like(x)

    path = tmp_path / "tiny.pt2"
    path.write_bytes(b"an earlier package")
    with pytest.raises(torchship.ExportError, match="computes something else"):
        torchship.export(Noisy(), (torch.rand(2, 3),), str(path), format="aoti",
                         manifest=batch_manifest([-1, 3]))
    assert path.read_bytes() == b"an earlier package"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt2"]


def batch_manifest(shape):
    return torchship.Manifest(name="t", batch_dim=True,
                              inputs=[torchship.tensor_spec("x", "FP32", shape)])


def has_v3() -> bool:
    return bool(aoti.cpu_features("x86-64-v3")) and \
        set(aoti.cpu_features("x86-64-v3")) <= set(aoti.cpu_flags())


@pytest.fixture(scope="module")
def nested(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("aoti") / "nested.pt2")
    generator = torch.Generator().manual_seed(3)
    example = torch.randn(2, 4, generator=generator)
    golden = [(torch.randn(1, 4, generator=generator), 3)]
    return torchship.export(Nested(), (example, 3), path, format="aoti",
                            manifest=batch_manifest([-1, 4]), golden_inputs=golden,
                            static_batches=(1,))


@pytest.fixture(scope="module")
def tiny_v3(tmp_path_factory):
    if not has_v3():
        pytest.skip("this CPU does not meet x86-64-v3")
    path = str(tmp_path_factory.mktemp("aoti") / "tiny_v3.pt2")
    return torchship.export(Tiny(), (torch.rand(2, 3, 8, 8),), path, format="aoti",
                            manifest=batch_manifest([-1, 3, 8, 8]), cpu_target="x86-64-v3")


def read_package(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        root = names[0].split("/", 1)[0]
        files = {name[len(root) + 1:]: archive.read(name) for name in names}
    return root, files


def test_layout_manifest_and_golden_where_cpp_reads_them(nested):
    root, files = read_package(nested.path)
    assert root == "nested"
    assert any(n.startswith("data/aotinductor/model/") and n.endswith(".so") for n in files)
    assert json.loads(files["extra/torchship.json"]) == nested.manifest
    index = json.loads(files["torchship/golden/index.json"])
    # The example, the caller's case, and the batch size checked at 1, 3 and 4.
    assert [case.get("label", "") for case in index["cases"]] == [
        "", "", "the batch size = 1", "the batch size = 3", "the batch size = 4"]
    assert index["rtol"] == 1e-4
    for case in index["cases"]:
        assert case["output"]["parts"][0]["npy"] in files
    # torch's own archive reader still opens it (extra files are text)
    from torch.export.pt2_archive._package import load_pt2
    assert set(load_pt2(nested.path).extra_files) == {"torchship.json"}


def test_golden_vectors_are_reproduced_by_torchs_loader(nested):
    _, files = read_package(nested.path)
    index = json.loads(files["torchship/golden/index.json"])
    kinds = [a["kind"] for a in nested.manifest["export"]["arguments"]]
    assert kinds == ["tensor", "constant"]

    def load(name):
        return torch.from_numpy(np.load(io.BytesIO(files[name]), allow_pickle=False).copy())

    package = torch._inductor.aoti_load_package(nested.path)
    for case in index["cases"]:
        inputs = [from_tree(tree, load) for tree in case["inputs"]]
        assert inputs[1] == 3  # the baked constant is recorded as a JSON number
        expected = from_tree(case["output"], load)
        got = package(*inputs)
        got = {"pair": list(got["pair"]), "parts": list(got["parts"])}
        assert first_mismatch(expected, got, index["rtol"], index["atol"]) is None


def test_manifest_records_format_cpu_and_dynamic_dims(nested):
    export = nested.manifest["export"]
    assert export["format"] == "aoti" and export["method"] == "torch.export"
    assert export["torch_version"] == torch.__version__
    cpu = export["cpu"]
    assert cpu["target"] == "native"
    assert cpu["features"] == [f for f in aoti.FEATURES if f in aoti.cpu_flags()]
    if "avx2" in aoti.cpu_flags():
        assert cpu["vec_isa"] != "INVALID_VEC_ISA"
        assert "avx2" in cpu["features"]
    assert export["arguments"][1] == {"name": "k", "kind": "constant", "value": 3}
    assert export["dynamic_dims"] == {"x": {"0": {"name": "batch", "min": 1, "max": 4096}}}
    assert nested.manifest["batch_dim"] is True and nested.manifest["precision"] == "fp32"
    assert repr(nested).startswith("ExportResult(") and "torch.export" in repr(nested)


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch(nested, batch):
    x = torch.randn(batch, 4)
    with torch.no_grad():
        expected = Nested().eval()(x, 3)
    got = nested.module(x, 3)
    assert got["pair"][0].shape == (batch, 3)
    assert first_mismatch(expected, got, 1e-4, None) is None


def test_a_batch_package_also_holds_a_model_compiled_for_batch_one(nested):
    # Inductor prepacks weights and picks kernels only for sizes it knows: batch 1, the commonest
    # request, gets a model of its own in the same package, checked against Python at export.
    _, files = read_package(nested.path)
    assert any(n.startswith("data/aotinductor/batch_1/") and n.endswith(".so") for n in files)
    assert nested.manifest["export"]["static_batches"] == [
        {"batch": 1, "model": "batch_1", "arguments": [0]}]
    assert nested.notes[0].endswith("with static batch size(s) 1")
    assert re.fullmatch(r"aoti: static batch 1 kept: [0-9.]+ ms against the dynamic model's "
                        r"[0-9.]+ ms \(asked for by static_batches\)", nested.notes[1])
    from torch._inductor.package import load_package
    x = torch.randn(1, 4)
    with torch.no_grad():
        expected = Nested().eval()(x, 3)
    got = load_package(nested.path, "batch_1")(x, 3)
    got = {"pair": list(got["pair"]), "parts": list(got["parts"])}
    expected = {"pair": list(expected["pair"]), "parts": list(expected["parts"])}
    assert first_mismatch(expected, got, 1e-4, None) is None


def test_by_default_a_static_model_stays_only_if_it_ran_faster(tmp_path):
    # Timed against the dynamic model at export: a default must not slow a model down.
    result = torchship.export(Tiny(), (torch.rand(2, 3, 8, 8),), str(tmp_path / "t.pt2"),
                              format="aoti", manifest=batch_manifest([-1, 3, 8, 8]))
    found = re.fullmatch(r"aoti: static batch 1 (kept|left out): ([0-9.]+) ms against the "
                         r"dynamic model's ([0-9.]+) ms", result.notes[1])
    assert found, result.notes
    kept = found.group(1) == "kept"
    static_ms, dynamic_ms = float(found.group(2)), float(found.group(3))
    # The note rounds to 3 significant digits: where that blurs which side of the 97% line the
    # times lie, either verdict is right.
    if abs(static_ms - 0.97 * dynamic_ms) > 0.01 * dynamic_ms:
        assert kept is (static_ms < 0.97 * dynamic_ms), result.notes
    _, files = read_package(result.path)
    folders = {n.split("/")[2] for n in files if n.startswith("data/aotinductor/")}
    assert folders == ({"model", "batch_1"} if kept else {"model"})
    assert ("static_batches" in result.manifest["export"]) is kept


def test_static_batches_larger_than_the_example_and_none(tmp_path):
    # A size above the example's batch is exported on the example's rows, cycled.
    result = torchship.export(Tiny(), (torch.rand(2, 3, 8, 8),), str(tmp_path / "t.pt2"),
                              format="aoti", manifest=batch_manifest([-1, 3, 8, 8]),
                              static_batches=(3,), golden_inputs=[(torch.rand(3, 3, 8, 8),)])
    assert [m["batch"] for m in result.manifest["export"]["static_batches"]] == [3]
    assert result.manifest["export"]["dynamic_dims"]["x"]["0"]["name"] == "batch"
    plain = torchship.export(Tiny(), (torch.rand(2, 3, 8, 8),), str(tmp_path / "p.pt2"),
                             format="aoti", manifest=batch_manifest([-1, 3, 8, 8]),
                             static_batches=())
    assert "static_batches" not in plain.manifest["export"]
    _, files = read_package(plain.path)
    assert {n.split("/")[2] for n in files if n.startswith("data/aotinductor/")} == {"model"}


@pytest.mark.parametrize("value,manifest,message", [
    ((0,), True, "static_batches: expected batch sizes from 1 to 4096, got 0"),
    ((True,), True, "static_batches: expected batch sizes from 1 to 4096, got True"),
    ((1.5,), True, "static_batches: expected batch sizes from 1 to 4096, got 1.5"),
    ((4097,), True, "static_batches: expected batch sizes from 1 to 4096, got 4097"),
    ((1,), False, "static_batches needs a batch dimension: pass manifest=Manifest(..., "
                  "batch_dim=True)"),
])
def test_bad_static_batches_are_refused_before_compiling(tmp_path, value, manifest, message):
    with pytest.raises(torchship.ExportError) as error:
        torchship.export(Tiny(), (torch.rand(2, 3, 8, 8),), str(tmp_path / "t.pt2"),
                         format="aoti", static_batches=value,
                         manifest=batch_manifest([-1, 3, 8, 8]) if manifest else None)
    assert str(error.value) == message
    assert not (tmp_path / "t.pt2").exists()


def test_dynamic_ranges_are_what_the_compiled_code_accepts(tiny_v3):
    # Inductor may narrow a Dim's range where a kernel choice depends on the size (compiled
    # while guarding on the example's sizes, a convolution's memory format changed at batch
    # 16): the manifest records what the compiled checks accept, from 1 (the lower-bound check
    # is off), and C++ batches within it.
    batch = tiny_v3.manifest["export"]["dynamic_dims"]["x"]["0"]
    assert batch["name"] == "batch" and batch["min"] == 1 and 2 <= batch["max"] <= 4096
    for size in (1, batch["max"]):
        assert tiny_v3.module(torch.rand(size, 3, 8, 8)).shape[0] == size
    with pytest.raises(RuntimeError, match=f"expected to be <= {batch['max']}"):
        tiny_v3.module(torch.rand(1, 3, 8, 8).expand(batch["max"] + 1, 3, 8, 8))


def test_v3_target_records_avx2_not_avx512(tiny_v3):
    cpu = tiny_v3.manifest["export"]["cpu"]
    assert cpu["target"] == "x86-64-v3"
    assert cpu["vec_isa"] == "AVX2"
    assert cpu["features"] == ["avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "abm", "movbe"]
    assert not any(f.startswith("avx512") for f in cpu["features"])
    x = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(tiny_v3.module(x), Tiny().eval()(x), rtol=1e-4, atol=1e-5)


def test_cpu_features_of_the_baselines():
    if not aoti.is_x86():
        assert aoti.cpu_features("x86-64-v4") == []
        return
    assert aoti.cpu_features("x86-64-v2") == []
    assert aoti.cpu_features("x86-64-v4")[:8] == aoti.cpu_features("x86-64-v3")
    assert aoti.cpu_features("x86-64-v4")[8:] == ["avx512f", "avx512dq", "avx512cd",
                                                  "avx512bw", "avx512vl"]


def test_compiler_environment_is_restored():
    from torch._inductor import cpp_builder, cpu_vec_isa
    before = (cpp_builder._get_python_related_args, cpu_vec_isa.valid_vec_isa_list,
              os.environ.get("TORCHINDUCTOR_CACHE_DIR"))
    with aoti.compiler_environment("x86-64-v3"):
        assert cpp_builder._get_python_related_args()[1] == []
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == aoti.inductor_cache_dir()
    assert (cpp_builder._get_python_related_args, cpu_vec_isa.valid_vec_isa_list,
            os.environ.get("TORCHINDUCTOR_CACHE_DIR")) == before


def test_scalar_kernels_on_an_avx2_cpu_are_refused_unless_asked_for():
    if not aoti.is_x86() or "avx2" not in aoti.cpu_flags():
        pytest.skip("not an x86-64 CPU with AVX2")
    with pytest.raises(torchship.ExportError, match="scalar kernels"):
        aoti.check_vectorized("INVALID_VEC_ISA", "native")
    aoti.check_vectorized("INVALID_VEC_ISA", "x86-64-v2")
    aoti.check_vectorized("AVX2", "x86-64-v3")


def test_bad_format_and_cpu_target(tmp_path):
    with pytest.raises(torchship.ExportError, match="format must be one of torchscript, aoti"):
        torchship.export(Tiny(), torch.rand(1, 3, 8, 8), str(tmp_path / "t.pt2"), format="onnx")
    with pytest.raises(torchship.ExportError, match="cpu_target must be one of"):
        torchship.export(Tiny(), torch.rand(1, 3, 8, 8), str(tmp_path / "t.pt2"),
                         format="aoti", cpu_target="haswell")
    with pytest.raises(torchship.ExportError, match="cpu_target applies to format='aoti'"):
        torchship.export(Tiny(), torch.rand(1, 3, 8, 8), str(tmp_path / "t.pt"),
                         cpu_target="x86-64-v3")
    with pytest.raises(torchship.ExportError, match="static_batches applies to format='aoti'"):
        torchship.export(Tiny(), torch.rand(1, 3, 8, 8), str(tmp_path / "t.pt"),
                         static_batches=(1,))


@pytest.mark.parametrize("options,named", [
    ({"method": "script"}, "method"),
    ({"method": "trace"}, "method"),
    ({"trace": ["conv"]}, "trace"),
    ({"precision": "bf16"}, "precision"),
    ({"precision": "int8", "calibration": [(torch.rand(1, 3, 8, 8),)]}, "precision, calibration"),
])
def test_torchscript_only_options_are_refused(tmp_path, options, named):
    with pytest.raises(torchship.ExportError) as error:
        torchship.export(Tiny(), torch.rand(1, 3, 8, 8), str(tmp_path / "t.pt2"), format="aoti",
                         **options)
    assert f"format='aoti' exports with torch.export, in fp32: {named}" in str(error.value)
    assert "format='torchscript' only" in str(error.value)


@pytest.mark.filterwarnings("ignore::torchship.ExportWarning")
def test_torchscript_exports_record_their_format(tmp_path):
    result = torchship.export(nn.ReLU(), torch.ones(2), str(tmp_path / "relu.pt"))
    assert result.manifest["export"]["format"] == "torchscript"
    assert result.manifest["export"]["method"] == "trace"


def test_segmentation_list_input_is_refused_with_the_reason(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "examples", "article"))
    from pipelines import lraspp_segmentation
    # The article's pipeline with its list form as the example: refused before anything is
    # compiled (examples/article/export.py exports its batch form instead).
    images = [torch.randint(0, 256, (64, 96, 3), dtype=torch.uint8) for _ in range(2)]
    manifest = torchship.Manifest(task="segmentation",
                                  inputs=[torchship.image_input("images")])
    with pytest.raises(torchship.ExportError) as error:
        torchship.export(lraspp_segmentation().eval(), (images,),
                         str(tmp_path / "segmentation.pt2"), manifest=manifest, format="aoti")
    message = str(error.value)
    assert "input 'images' is a list of images whose length and element shapes vary" in message
    assert "specializes a list's length" in message
    assert "BHWC" in message and "batch_dim=True" in message
    assert not os.path.exists(tmp_path / "segmentation.pt2")


def test_export_failure_carries_the_doctors_diagnosis(tmp_path):
    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x * 2
            return x - 1

    with pytest.raises(torchship.ExportError) as error:
        torchship.export(Branchy(), torch.ones(3), str(tmp_path / "b.pt2"), format="aoti")
    message = str(error.value)
    assert message.startswith("torch.export cannot export Branchy")
    assert "[export-data-dependent]" in message and "torch.cond" in message
    assert "if x.sum() > 0:" in message
