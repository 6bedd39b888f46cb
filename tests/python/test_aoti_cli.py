"""AOTInductor packages (.pt2) through the CLI and the server, exactly like TorchScript archives:
info, run (image, .npy, JSON; --json, --out, the summary), classify, check, the batch range the
package was compiled for, the CPU features it needs, and `serve` on a repository of model.pt2
files. Python's numbers (tests/fixtures/make_fixtures.py) by torchship's one comparison rule.

The .pt2 fixtures exist only where the torch that made them has torch.export + AOTInductor
(2.6 or newer): on Debian's 1.13 every test here is skipped except the one that checks how a
build refuses (or, with a runtime, tries) a package it is handed."""

import json
import os
import platform
import re
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import (assert_argmax_agrees, assert_close, golden_rtol, rule_atol, stderr_lines,
                      tensor_from_tree)
from harness.server_process import Server

ERROR = "torchship: error: "


@pytest.fixture(scope="module")
def pt2(fixtures) -> Path:
    """The fixture folder, where this torch made the .pt2 packages."""
    if not (Path(fixtures) / "classifier.pt2").exists():
        pytest.skip("no .pt2 fixtures: this torch has no torch.export + AOTInductor (< 2.6)")
    return Path(fixtures)


@pytest.fixture(scope="module")
def v3(pt2) -> Path:
    if not (pt2 / "aoti_v3.pt2").exists():
        pytest.skip("aoti_v3.pt2 is made only on CPUs with x86-64-v3 (AVX2)")
    return pt2


def manifest_of(package: Path) -> dict:
    with zipfile.ZipFile(package) as z:
        name = next(n for n in z.namelist() if n.endswith("/extra/torchship.json"))
        return json.loads(z.read(name))


def with_manifest(source: Path, target: Path, change) -> None:
    """A copy of a package with its manifest changed; every entry stored as it came."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/extra/torchship.json"):
                manifest = json.loads(data)
                change(manifest)
                data = json.dumps(manifest).encode()
            zout.writestr(info.filename, data, compress_type=zipfile.ZIP_STORED)


def assert_one_error(result: subprocess.CompletedProcess, message: str, code: int = 2) -> None:
    assert result.returncode == code, result.stderr
    assert stderr_lines(result) == [ERROR + message]
    assert result.stdout == ""


def assert_same_tree(expected, actual, rtol: float, path: str = "output") -> None:
    """The same nesting (dict keys in order, list lengths), tensor leaves by the rule."""
    if isinstance(expected, dict) and "datatype" in expected and "data" in expected:
        assert isinstance(actual, dict) and set(actual) == {"datatype", "shape", "data"}, path
        assert (actual["datatype"], actual["shape"]) == (expected["datatype"],
                                                         expected["shape"]), path
        assert_close(tensor_from_tree(expected), tensor_from_tree(actual), rtol)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected), path
        for key in expected:
            assert_same_tree(expected[key], actual[key], rtol, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for index, (e, a) in enumerate(zip(expected, actual)):
            assert_same_tree(e, a, rtol, f"{path}[{index}]")
    else:
        assert actual == expected, path


# 1. info

def test_info_shows_the_format_the_cpu_and_the_manifest(run, pt2):
    result = run("info", "classifier.pt2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "format    AOTInductor package (compiled ahead of time)" in lines
    cpu = manifest_of(pt2 / "classifier.pt2")["export"]["cpu"]
    assert f"cpu       {cpu['target']}, vectorized for {cpu['vec_isa']}; needs " \
           f"{' '.join(cpu['features'])}" in lines
    # What the TorchScript archive of the same pipeline shows, the package shows too.
    for line in ["name      resnet34-classifier", "task      classification (1000 labels)",
                 "forward   forward(image: Tensor) -> Tensor",
                 "inputs    image  UINT8 [224, 224, 3] HWC, RGB, resized to 224x224",
                 "golden    1 case recorded at export"]:
        assert line in lines
    assert run("info", "classifier.pt").stdout.splitlines()[1] == "format    TorchScript"

    info = run.json("info", "classifier.pt2", "--json")
    assert info["format"] == "aoti" and info["golden"] is True
    assert info["manifest"] == manifest_of(pt2 / "classifier.pt2")
    assert info["manifest"]["export"]["format"] == "aoti"
    assert info["manifest"]["export"]["method"] == "torch.export"
    assert info["signature"] == "forward(image: Tensor) -> Tensor"


def test_info_of_a_v3_package_names_its_baseline(run, v3):
    result = run("info", "aoti_v3.pt2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "cpu       x86-64-v3, vectorized for AVX2; needs avx avx2 fma f16c bmi1 bmi2 abm " \
           "movbe" in lines
    assert "batch     first dimension of inputs and outputs" in lines


def test_info_of_a_plain_package_without_manifest(run, pt2):
    result = run("info", "plain.pt2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "format    AOTInductor package (compiled ahead of time)" in lines
    assert "manifest  none (plain package: generic inputs and outputs only)" in lines
    assert "golden    none" in lines
    info = run.json("info", "plain.pt2", "--json")
    assert info["format"] == "aoti" and info["manifest"] is None and info["golden"] is False
    assert info["signature"] == "forward(input_0: Tensor, input_1: Tensor) -> Tensor"


# 2. parity with Python

def test_classifier_run_out_and_json_match_python(run, pt2, tmp_path):
    expected = np.load(pt2 / "classifier_pt2_chelsea.npy")
    rtol = golden_rtol(str(pt2 / "classifier.pt2"))
    result = run("run", "classifier.pt2", "--input", "chelsea.png", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "output: FP32 [1, 1000]"
    assert sorted(os.listdir(tmp_path)) == ["logits.npy"]
    assert_close(expected, np.load(tmp_path / "logits.npy"), rtol)
    out = run.json("run", "classifier.pt2", "--input", "chelsea.png", "--json")
    assert_close(expected, tensor_from_tree(out["outputs"]), rtol)


def test_classify_top1_matches_python_and_the_torchscript_archive(run, pt2):
    logits = np.load(pt2 / "classifier_pt2_chelsea.npy")[0]
    atol = rule_atol(logits, golden_rtol(str(pt2 / "classifier.pt2")))
    compiled = run.json("classify", "classifier.pt2", "chelsea.png", "--json")["results"][0]
    assert compiled["path"] == "chelsea.png"
    assert_argmax_agrees(logits, np.argmax(logits, keepdims=True),
                         np.array([compiled["index"]]), 0, atol)
    scripted = run.json("classify", "classifier.pt", "chelsea.png", "--json")["results"][0]
    assert compiled["index"] == scripted["index"]
    assert compiled["label"] == scripted["label"]
    table = run("classify", "classifier.pt2", "chelsea.png", "-k", "2")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0] == "chelsea.png"
    assert table.stdout.splitlines()[1].split()[2] == str(compiled["index"])


# 3. check

# The example's case, the caller's golden inputs, and three size checks of the batch dimension.
@pytest.mark.parametrize("name,cases", [("classifier.pt2", 1), ("structured.pt2", 6),
                                        ("aoti_v3.pt2", 5)])
def test_check_passes_on_exported_packages(run, pt2, name, cases):
    if not (pt2 / name).exists():
        pytest.skip(f"{name} is not made on this CPU")
    result = run("check", name)
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith(f"PASS: {cases} golden case{'s' if cases > 1 else ''}, tolerance ")
    out = run.json("check", name, "--json")
    assert out["ok"] is True and len(out["cases"]) == cases


def test_check_says_a_plain_package_has_no_golden_vectors(run, pt2):
    assert_one_error(run("check", "plain.pt2"), "plain.pt2 has no golden vectors (export it with "
                                                "torchship.export to record them)")


# 4. nested outputs

def test_structured_outputs_keep_their_nesting(run, pt2):
    with open(pt2 / "structured_expected.json") as f:
        expected = json.load(f)["output"]
    out = run.json("run", "structured.pt2", "-i", "structured_input.npy", "-i", "3", "--json")
    # {"pair": (relu, sum), "parts": [x * k, softmax, count]}: a dict of two arrays.
    assert list(out["outputs"]) == ["pair", "parts"]
    assert [len(out["outputs"]["pair"]), len(out["outputs"]["parts"])] == [2, 3]
    assert out["outputs"]["parts"][2]["datatype"] == "INT64"
    assert_same_tree(expected, out["outputs"], golden_rtol(str(pt2 / "structured.pt2")))


def test_structured_summary_and_out_name_leaves_by_path(run, pt2, tmp_path):
    result = run("run", "structured.pt2", "-i", "structured_input.npy", "-i", "3",
                 "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "output: dict(2)"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "pair[0]", "pair[1]", "parts[0]", "parts[1]", "parts[2]"]
    assert lines[5].startswith("  parts[2]: INT64 [2]")
    assert sorted(os.listdir(tmp_path)) == ["pair_0.npy", "pair_1.npy", "parts_0.npy",
                                            "parts_1.npy", "parts_2.npy"]
    with open(pt2 / "structured_expected.json") as f:
        expected = json.load(f)["output"]
    rtol = golden_rtol(str(pt2 / "structured.pt2"))
    for key, index in [("pair", 0), ("pair", 1), ("parts", 0), ("parts", 1), ("parts", 2)]:
        assert_close(tensor_from_tree(expected[key][index]),
                     np.load(tmp_path / f"{key}_{index}.npy"), rtol)


def test_structured_compiled_in_argument_may_be_left_out(run, pt2):
    # k (an int, compiled in at 3) is still an argument, with the compiled value as default:
    # left out, the package runs as exported (a KServe request names only tensors).
    given = run.json("run", "structured.pt2", "-i", "structured_input.npy", "-i", "3", "--json")
    left_out = run.json("run", "structured.pt2", "-i", "structured_input.npy", "--json")
    assert left_out == given
    result = run("run", "structured.pt2", "-i", "structured_input.npy", "-i", "3", "-i", "3")
    assert result.returncode == 2
    assert stderr_lines(result) == [ERROR + "expected 1 to 2 inputs (x: Tensor, k: Any), got 3"]


def test_structured_refuses_another_value_for_the_compiled_in_argument(run, pt2):
    # torch.export compiled k = 3 in: another value would be ignored silently.
    assert_one_error(run("run", "structured.pt2", "-i", "structured_input.npy", "-i", "5"),
                     "input 'k': the package was compiled with k = 3 (torch.export compiles "
                     "non-tensor arguments in), got 5; export it again for another value")


# 5. a package without manifest: generic inputs, the compiled code's own input checks

def test_plain_package_with_generic_inputs_matches_python(run, pt2, tmp_path):
    expected = np.load(pt2 / "plain_pt2_output.npy")
    out = run.json("run", "plain.pt2", "-i", "plain_pt2_a.npy", "-i", "plain_pt2_b.npy", "--json")
    # No golden vectors to say which rtol: torchship.export's default, 1e-4.
    assert_close(expected, tensor_from_tree(out["outputs"]), 1e-4)


def wrong_plain_inputs(pt2: Path, tmp_path: Path):
    """(-i arguments, the stable part of the compiled code's refusal)."""
    a = np.load(pt2 / "plain_pt2_a.npy")
    np.save(tmp_path / "a_t.npy", np.ascontiguousarray(a.T))
    np.save(tmp_path / "a_f64.npy", a.astype(np.float64))
    return [
        (["plain_pt2_b.npy", "plain_pt2_b.npy"],
         "input_handles[0]: unmatched dim value at 0, expected: 2, but got: 3"),
        ([str(tmp_path / "a_t.npy"), "plain_pt2_b.npy"],
         "input_handles[0]: unmatched dim value at 0, expected: 2, but got: 3"),
        (["plain_pt2_a.npy", "plain_pt2_a.npy"],
         "input_handles[1]: unmatched dim value at 0, expected: 3, but got: 2"),
        ([str(tmp_path / "a_f64.npy"), "plain_pt2_b.npy"],
         "input_handles[0]: unmatched dtype, expected: 6(at::kFloat), but got: 7"),
    ]


def test_plain_package_refuses_inputs_of_other_shapes(run, pt2, tmp_path):
    for inputs, why in wrong_plain_inputs(pt2, tmp_path):
        result = run("run", "plain.pt2", "-i", inputs[0], "-i", inputs[1])
        assert result.returncode == 2, (inputs, result.stderr)  # never a signal (negative)
        assert result.stdout == ""
        assert stderr_lines(result)[-1] == f"{ERROR}the model rejected the input: {why}"


def test_a_refused_input_is_one_line_on_stderr(run, pt2, tmp_path):
    # Errors are one line on stderr (docs/cli.md), also when the compiled code refuses.
    for inputs, why in wrong_plain_inputs(pt2, tmp_path):
        result = run("run", "plain.pt2", "-i", inputs[0], "-i", inputs[1])
        assert stderr_lines(result) == [f"{ERROR}the model rejected the input: {why}"]


# 6. the batch range a package was compiled for

def batch_range(package: Path) -> tuple:
    batch = manifest_of(package)["export"]["dynamic_dims"]["x"]["0"]
    assert batch["name"] == "batch"
    return batch["min"], batch["max"]


def with_batch_range(source: Path, target: Path, largest: int) -> None:
    """A copy of a package whose manifest says it takes batches of 1 to `largest`."""
    def narrow(manifest):
        manifest["export"]["dynamic_dims"]["x"]["0"]["max"] = largest
    with_manifest(source, target, narrow)


def test_batches_within_the_range_run_and_agree(run, v3, tmp_path):
    smallest, largest = batch_range(v3 / "aoti_v3.pt2")
    assert smallest == 1 and 16 <= largest <= 4096  # export asked for 1..4096
    items = np.random.default_rng(5).random((16, 3, 16, 16), dtype=np.float32)
    rtol = golden_rtol(str(v3 / "aoti_v3.pt2"))
    outputs = {}
    for batch in (1, 15, 16):  # a convolution's memory format changes at 16
        np.save(tmp_path / f"x{batch}.npy", items[:batch])
        out = run.json("run", "aoti_v3.pt2", "-i", str(tmp_path / f"x{batch}.npy"), "--json")
        outputs[batch] = tensor_from_tree(out["outputs"])
        assert outputs[batch].shape == (batch, 5)
    assert_close(outputs[16][:1], outputs[1], rtol)
    assert_close(outputs[16][:15], outputs[15], rtol)
    np.save(tmp_path / "largest.npy", np.zeros((largest, 3, 16, 16), np.float32))
    result = run("run", "aoti_v3.pt2", "-i", str(tmp_path / "largest.npy"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"output: FP32 [{largest}, 5]"


def test_batches_outside_the_range_are_refused(run, v3, tmp_path):
    _, largest = batch_range(v3 / "aoti_v3.pt2")
    np.save(tmp_path / "over.npy", np.zeros((largest + 1, 3, 16, 16), np.float32))
    assert_one_error(run("run", "aoti_v3.pt2", "-i", str(tmp_path / "over.npy")),
                     f"input 'x': dimension 0 is {largest + 1}, the package was compiled for 1 "
                     f"to {largest} (send larger batches as several requests)")
    np.save(tmp_path / "x0.npy", np.zeros((0, 3, 16, 16), np.float32))
    assert_one_error(run("run", "aoti_v3.pt2", "-i", str(tmp_path / "x0.npy")),
                     "input 'x': expected FP32 tensor of shape [-1, 3, 16, 16], -1 being any "
                     "size from 1, got FP32 [0, 3, 16, 16]")


def test_a_package_compiled_for_1_to_15_refuses_16(run, v3, tmp_path):
    # As AOTInductor can compile a narrower range than asked (docs/manifest.md: dynamic_dims).
    narrow = tmp_path / "narrow.pt2"
    with_batch_range(v3 / "aoti_v3.pt2", narrow, 15)
    for batch in (1, 15):
        np.save(tmp_path / f"x{batch}.npy", np.zeros((batch, 3, 16, 16), np.float32))
        result = run("run", str(narrow), "-i", str(tmp_path / f"x{batch}.npy"))
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == f"output: FP32 [{batch}, 5]"
    np.save(tmp_path / "x16.npy", np.zeros((16, 3, 16, 16), np.float32))
    assert_one_error(run("run", str(narrow), "-i", str(tmp_path / "x16.npy")),
                     "input 'x': dimension 0 is 16, the package was compiled for 1 to 15 (send "
                     "larger batches as several requests)")


def test_v3_package_matches_python(run, v3):
    out = run.json("run", "aoti_v3.pt2", "-i", "aoti_v3_input.npy", "--json")
    assert_close(np.load(v3 / "aoti_v3_output.npy"), tensor_from_tree(out["outputs"]),
                 golden_rtol(str(v3 / "aoti_v3.pt2")))


# 7. a package for a CPU this one is not

def cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            return {flag for line in f if line.startswith("flags")
                    for flag in line.split(":", 1)[1].split()}
    except OSError:
        return set()


def test_a_batch_of_one_runs_the_model_compiled_for_it(run, v3, tmp_path):
    # torchship.export compiles batch 1 with every size fixed beside the dynamic batch, and C++
    # runs that model for exactly that size (test_batches_within_the_range_run_and_agree
    # compares its numbers with the dynamic model's).
    assert manifest_of(v3 / "aoti_v3.pt2")["export"]["static_batches"] == [
        {"batch": 1, "model": "batch_1", "arguments": [0]}]
    items = np.random.default_rng(6).random((2, 3, 16, 16), dtype=np.float32)
    np.save(tmp_path / "x1.npy", items[:1])
    np.save(tmp_path / "x2.npy", items)
    out = run.json("bench", "aoti_v3.pt2", "-i", str(tmp_path / "x1.npy"), "--runs", "2",
                   "--json")
    assert out["notes"][-1] == ("compiled ahead of time by AOTInductor: nothing to optimize at "
                                "load; compiled for static batch size 1")
    # Shown by a manifest that sends batch 2 to it: the model compiled for 1 refuses the size.
    misrouted = tmp_path / "misrouted.pt2"

    def route_batch_2_to_batch_1(manifest):
        manifest["export"]["static_batches"][0]["batch"] = 2
    with_manifest(v3 / "aoti_v3.pt2", misrouted, route_batch_2_to_batch_1)
    assert run("run", str(misrouted), "-i", str(tmp_path / "x1.npy"),
               "--warmup", "0").returncode == 0
    result = run("run", str(misrouted), "-i", str(tmp_path / "x2.npy"), "--warmup", "0")
    assert_one_error(result, "the model failed on an input that matches its manifest: "
                     "input_handles[0]: unmatched dim value at 0, expected: 1, but got: 2",
                     code=1)
    # A model the manifest names that the package lacks: the load fails in one line.
    missing = tmp_path / "missing.pt2"

    def name_a_missing_model(manifest):
        manifest["export"]["static_batches"][0]["model"] = "batch_7"
    with_manifest(v3 / "aoti_v3.pt2", missing, name_a_missing_model)
    result = run("run", str(missing), "-i", str(tmp_path / "x1.npy"))
    assert result.returncode == 2
    assert stderr_lines(result)[0].startswith(f"{ERROR}cannot load {missing}: "), result.stderr


def test_a_package_needing_a_missing_cpu_feature_is_refused(run, cli, v3, tmp_path):
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86 CPU features")
    if "avx512_4fmaps" in cpu_flags():
        pytest.skip("this CPU has avx512_4fmaps (a Xeon Phi)")
    copy = tmp_path / "copy.pt2"
    with_manifest(v3 / "aoti_v3.pt2", copy,
                  lambda m: m["export"]["cpu"]["features"].append("avx512_4fmaps"))
    target = manifest_of(copy)["export"]["cpu"]["target"]
    assert target == "x86-64-v3"
    message = (f"cannot load {copy}: the package was compiled for a CPU with avx512_4fmaps "
               f"(target {target}), which this CPU lacks; running it would crash (illegal "
               f"instruction); export it again with cpu_target=\"x86-64-v2\"")
    # Unsupported is exit 2 like every bad model (docs/cli.md: 3 is check's mismatch only).
    assert_one_error(run("info", str(copy)), message)
    assert_one_error(run("run", str(copy), "-i", "aoti_v3_input.npy"), message)
    assert_one_error(run("check", str(copy)), message)

    repository = tmp_path / "repository"
    (repository / "tiny" / "1").mkdir(parents=True)
    shutil.copy(copy, repository / "tiny" / "1" / "model.pt2")
    served = subprocess.run([cli, "serve", "--model-repository", str(repository), "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert served.returncode == 2
    model = repository / "tiny" / "1" / "model.pt2"
    assert stderr_lines(served) == [ERROR + "model 'tiny' version 1: " +
                                    message.replace(str(copy), str(model))]


# 8. every build: a .pt2 is run by a build with AOTInductor, refused in one line by one without

def fake_package(path: Path) -> None:
    """A .pt2 whose compiled model is not a shared library: AOTInductor's loader fails on it, a
    build without AOTInductor refuses it before looking."""
    root = path.stem
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{root}/archive_format", "pt2")
        z.writestr(f"{root}/archive_version", "0")
        z.writestr(f"{root}/.data/version", "6\n")
        z.writestr(f"{root}/byteorder", "little")
        z.writestr(f"{root}/data/aotinductor/model/abc.wrapper_metadata.json",
                   json.dumps({"AOTI_DEVICE_KEY": "cpu", "AOTI_CPU_ISA": ""}))
        z.writestr(f"{root}/data/aotinductor/model/abc.wrapper.so", b"not a shared library\n")


def libtorch_version(cli: str) -> tuple:
    line = subprocess.run([cli, "--version"], capture_output=True, text=True).stdout
    release = re.search(r"libtorch (\d+)\.(\d+)\.(\d+)", line)
    return tuple(int(part) for part in release.groups())


def test_a_package_on_either_kind_of_build(run, cli, tmp_path):
    package = tmp_path / "fake.pt2"
    fake_package(package)
    version = libtorch_version(cli)
    result = run("info", str(package), env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = stderr_lines(result)
    assert len(lines) == 1
    if version < (2, 6):
        release = ".".join(map(str, version))
        assert lines[0] == (f"{ERROR}cannot load {package}: it is an AOTInductor package (.pt2), "
                            f"and this torchship was built against libtorch {release}, which has "
                            f"no AOTInductor runtime (2.6 or newer has); run it with a torchship "
                            f"built against PyTorch 2.x, or export the model as TorchScript")
    else:
        # The loader's own words (dlopen's, with the folder it unpacked into).
        assert lines[0].startswith(f"{ERROR}cannot load {package}: ")
        assert "abc.wrapper.so" in lines[0]


def test_a_failed_load_leaves_no_unpacked_package_behind(run, pt2, tmp_path):
    package = tmp_path / "fake.pt2"
    fake_package(package)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = run("info", str(package), env={"TMPDIR": str(scratch)})
    assert result.returncode == 2
    assert os.listdir(scratch) == []  # AOTInductor unpacks into $TMPDIR/aotinductor_XXXXXX


# 9. serve

@pytest.fixture(scope="module")
def served(cli, v3, tmp_path_factory):
    repository = str(tmp_path_factory.mktemp("repository"))
    narrow = tmp_path_factory.mktemp("narrow") / "narrow.pt2"
    with_batch_range(v3 / "aoti_v3.pt2", narrow, 15)
    for name, package, config in [
            ("resnet", v3 / "classifier.pt2", None),
            ("tiny", narrow, {"max_batch_size": 32, "max_queue_delay_us": 200000}),
            ("wide", v3 / "aoti_v3.pt2", {"max_batch_size": 32})]:
        os.makedirs(os.path.join(repository, name, "1"))
        shutil.copy(package, os.path.join(repository, name, "1", "model.pt2"))
        if config is not None:
            with open(os.path.join(repository, name, "config.json"), "w") as f:
                json.dump(config, f)
    server = Server(cli, repository, "--threads", "2")
    yield server
    assert server.terminate() == 0


def chelsea_224(folder: Path) -> np.ndarray:
    """The classifier's input as make_fixtures.read_rgb makes it (OpenCV, linear resize)."""
    image = cv2.cvtColor(cv2.imread(str(folder / "chelsea.png"), cv2.IMREAD_COLOR),
                         cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(cv2.resize(image, (224, 224), interpolation=cv2.INTER_LINEAR))


def test_serve_metadata_and_logits_of_a_package(served, v3):
    # The package's range caps the config's max_batch_size, never raises it.
    assert served.log[0] == ("torchship: info: serving 3 model versions: resnet v1, tiny v1 "
                             "(batches up to 15), wide v1 (batches up to 32)")
    client = served.connect()
    meta = client.get("/v2/models/resnet").json()
    assert (meta["name"], meta["versions"]) == ("resnet", ["1"])
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [224, 224, 3]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [1, 1000]}]
    tiny = client.get("/v2/models/tiny").json()
    assert tiny["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 16, 16]}]
    assert tiny["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 5]}]
    assert client.get("/v2/models/resnet/ready").json() == {"name": "resnet", "ready": True}

    expected = np.load(v3 / "classifier_pt2_chelsea.npy")
    rtol = golden_rtol(str(v3 / "classifier.pt2"))
    for binary in (False, True):
        response = client.infer("resnet", {"image": chelsea_224(v3)}, binary_inputs=binary,
                                binary_outputs=binary)
        assert response.status == 200, response.body
        assert_close(expected, response.outputs()["logits"], rtol)
    with open(v3 / "chelsea.png", "rb") as f:
        classified = client.request("POST", "/v2/models/resnet/classify?top_k=1", f.read())
    assert classified.status == 200, classified.body
    assert_argmax_agrees(expected[0], np.argmax(expected[0], keepdims=True),
                         np.array([classified.json()["predictions"][0]["index"]]), 0,
                         rule_atol(expected[0], rtol))

    too_many = client.infer("tiny", {"x": np.zeros((16, 3, 16, 16), np.float32)})
    assert (too_many.status, too_many.json()) == (400, {
        "error": "input 'x': dimension 0 is 16, the package was compiled for 1 to 15 (send "
                 "larger batches as several requests)"})


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_serve_batches_concurrent_requests_within_the_compiled_range(run, served, v3, tmp_path):
    items = np.random.default_rng(3).random((20, 3, 16, 16), dtype=np.float32)
    rtol = golden_rtol(str(v3 / "aoti_v3.pt2"))
    expected = []
    for half in (items[:10], items[10:]):
        np.save(tmp_path / "half.npy", half)
        expected.append(tensor_from_tree(
            run.json("run", "aoti_v3.pt2", "-i", str(tmp_path / "half.npy"), "--json")["outputs"]))
    expected = np.concatenate(expected)

    labels = 'model="tiny",version="1"'
    before = served.connect().get("/metrics").body.decode()
    start = threading.Barrier(20)
    answers, errors = {}, []

    def send(index):
        client = served.connect()
        start.wait()
        response = client.infer("tiny", {"x": items[index:index + 1]}, binary_inputs=True,
                                binary_outputs=True)
        if response.status == 200:
            answers[index] = response.outputs()["logits"]
        else:
            errors.append(response.body)
        client.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(answers) == list(range(20))
    for index, logits in answers.items():
        assert_close(expected[index:index + 1], logits, rtol)

    after = served.connect().get("/metrics").body.decode()

    def grew(name):
        return metric(after, name) - metric(before, name)
    inferences = grew(f"torchship_inferences_total{{{labels}}}")
    executions = grew(f"torchship_executions_total{{{labels}}}")
    assert inferences == 20
    assert 2 <= executions < 20, "20 requests waiting together: batches of at most 15"
    # Every execution ran at most 16 requests (the histogram's bucket; the cap is 15).
    assert grew(f'torchship_batch_requests_bucket{{{labels},le="16"}}') == executions
    assert grew(f"torchship_batch_requests_count{{{labels}}}") == executions


def test_serve_refuses_a_version_holding_both_formats(cli, v3, fixtures, tmp_path):
    repository = tmp_path / "repository"
    version = repository / "m" / "1"
    version.mkdir(parents=True)
    shutil.copy(Path(fixtures) / "plain.pt", version / "model.pt")
    shutil.copy(v3 / "aoti_v3.pt2", version / "model.pt2")
    result = subprocess.run([cli, "serve", "--model-repository", str(repository), "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert stderr_lines(result) == [ERROR + "model 'm' version 1: holds both model.pt and "
                                            "model.pt2; keep the one to serve"]
