"""OpenVINO archives (torchship.export(format="openvino")) through the exporter, the CLI and the
server, exactly like TorchScript archives and .pt2 packages: the archive's layout and manifest,
refusals of options and of operators OpenVINO lacks, info, run (image, .npy), classify, check,
nested outputs, batch sizes the example did not have, bad inputs, the load-time precision, and
`serve` over HTTP and gRPC with dynamic batching. Python's numbers (tests/fixtures/
make_fixtures.py) by torchship's one comparison rule.

The fixtures exist only where the torch that made them has torch.export and openvino is
installed (the PyPI stack); elsewhere every test here is skipped."""

import inspect
import json
import os
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import torchship
from conftest import (assert_argmax_agrees, assert_close, golden_rtol, rule_atol, stderr_lines,
                      tensor_from_tree)
from harness.server_process import Server

ERROR = "torchship: error: "
needs_openvino = pytest.mark.skipif(not torchship.openvino.available(),
                                    reason="torch.export and openvino are needed to export")


@pytest.fixture(scope="module")
def ov(fixtures) -> Path:
    """The fixture folder, where this Python made the OpenVINO archives."""
    if not (Path(fixtures) / "classifier.ov").exists():
        pytest.skip("no OpenVINO fixtures: this Python has no torch.export or openvino")
    return Path(fixtures)


def manifest_of(archive: Path) -> dict:
    with zipfile.ZipFile(archive) as z:
        name = next(n for n in z.namelist() if n.endswith("/extra/torchship.json"))
        return json.loads(z.read(name))


def assert_one_error(result, message):
    assert result.returncode == 2, result.stdout + result.stderr
    assert stderr_lines(result) == [ERROR + message]


# 1. the exporter

class Histogram(torch.nn.Module):
    def forward(self, x):
        return torch.histc(x, bins=4)  # no conversion rule in OpenVINO


@needs_openvino
def test_an_operator_openvino_lacks_is_refused_at_the_users_line(tmp_path):
    with pytest.raises(torchship.ExportError) as refused:
        torchship.export(Histogram(), torch.rand(8), str(tmp_path / "h.ov"), format="openvino")
    lines = str(refused.value).splitlines()
    assert lines[0] == ("format='openvino': OpenVINO cannot convert operator aten.histc (No "
                        "conversion rule found for operations: aten.histc.default)")
    line = inspect.getsourcelines(Histogram.forward)[1] + 1
    assert lines[1] == (f"  aten.histc is called at {__file__}:{line}: return torch.histc(x, "
                        "bins=4)  # no conversion rule in OpenVINO")
    assert lines[2].startswith("  export it with format='aoti' or format='torchscript'")
    assert not (tmp_path / "h.ov").exists() and os.listdir(tmp_path) == []


@needs_openvino
@pytest.mark.parametrize("option,value,named", [
    ("method", "script", "method"), ("precision", "bf16", "precision"),
    ("cpu_target", "x86-64-v3", "cpu_target")])
def test_options_of_other_formats_are_refused(tmp_path, option, value, named):
    with pytest.raises(torchship.ExportError, match=(
            rf"^format='openvino' exports with torch.export, in fp32 \(bf16 is chosen where it "
            rf"runs\): {named} applies to other formats only$")):
        torchship.export(torch.nn.ReLU(), torch.rand(2), str(tmp_path / "r.ov"),
                         format="openvino", **{option: value})


class Scale(torch.nn.Module):
    def forward(self, x):
        return x * 2


BATCHED = torchship.Manifest(batch_dim=True, inputs=[torchship.tensor_spec("x", "FP32", [-1, 3])])


@needs_openvino
def test_static_batches_are_checked_timed_and_recorded_not_stored(tmp_path):
    result = torchship.export(Scale(), torch.rand(2, 3), str(tmp_path / "s.ov"),
                              format="openvino", manifest=BATCHED, static_batches=(3, 1))
    assert result.manifest["export"]["static_batches"] == [
        {"batch": 1, "model": "batch_1", "arguments": [0]},
        {"batch": 3, "model": "batch_3", "arguments": [0]}]
    timed = [note for note in result.notes if note.startswith("openvino: static batch")]
    assert [note.split(":")[1] for note in timed] == [" static batch 1 kept", " static batch 3 kept"]
    assert all(note.endswith("ms (asked for by static_batches)") for note in timed)
    # C++ reshapes the one IR at load: no second IR in the archive
    with zipfile.ZipFile(tmp_path / "s.ov") as z:
        assert sum(name.endswith(".xml") for name in z.namelist()) == 1
    plain = torchship.export(Scale(), torch.rand(2, 3), str(tmp_path / "p.ov"),
                             format="openvino", manifest=BATCHED, static_batches=())
    assert "static_batches" not in plain.manifest["export"]


@needs_openvino
@pytest.mark.parametrize("sizes,message", [
    ((0,), "static_batches: expected batch sizes from 1 to 4096, got 0"),
    ((1,), "static_batches needs a batch dimension: pass manifest=Manifest(..., "
           "batch_dim=True)")])
def test_static_batches_that_are_not_batch_sizes_are_refused(tmp_path, sizes, message):
    manifest = BATCHED if sizes == (0,) else torchship.Manifest()
    with pytest.raises(torchship.ExportError) as refused:
        torchship.export(Scale(), torch.rand(2, 3), str(tmp_path / "s.ov"), format="openvino",
                         manifest=manifest, static_batches=sizes)
    assert str(refused.value) == message
    assert os.listdir(tmp_path) == []


def test_the_archive_holds_the_ir_the_call_spec_the_manifest_and_golden_cases(ov):
    with zipfile.ZipFile(ov / "structured.ov") as z:
        names = z.namelist()
        assert all(z.getinfo(n).compress_type == zipfile.ZIP_STORED for n in names)
        spec = json.loads(z.read("structured/openvino/call_spec.json"))
        index = json.loads(z.read("structured/torchship/golden/index.json"))
    assert names[:5] == ["structured/version", "structured/openvino/model.xml",
                         "structured/openvino/model.bin", "structured/openvino/call_spec.json",
                         "structured/extra/torchship.json"]
    assert len(spec) == 2 and all(isinstance(text, str) for text in spec)
    export = manifest_of(ov / "structured.ov")["export"]
    assert (export["format"], export["method"]) == ("openvino", "torch.export")
    assert export["dynamic_dims"] == {"x": {"0": {"name": "batch", "min": 1, "max": 4096}}}
    assert export["arguments"][1] == {"name": "k", "kind": "constant", "value": 3}
    # the example, the caller's case, and the batch checked at 1, 3 and 4
    assert [case.get("label", "") for case in index["cases"]] == [
        "", "", "the batch size = 1", "the batch size = 3", "the batch size = 4"]


# 2. the CLI

def test_info_shows_the_format_and_the_manifest(run, ov):
    result = run("info", "classifier.ov")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "format    OpenVINO IR (compiled at load, fp32)" in lines
    for line in ["name      resnet34-classifier", "task      classification (1000 labels)",
                 "forward   forward(image: Tensor) -> Tensor",
                 "inputs    image  UINT8 [224, 224, 3] HWC, RGB, resized to 224x224",
                 "golden    1 case recorded at export"]:
        assert line in lines
    info = run.json("info", "classifier.ov", "--json")
    assert (info["format"], info["golden"]) == ("openvino", True)
    assert info["manifest"] == manifest_of(ov / "classifier.ov")
    # ResNet34's weights, less what OpenVINO folds: batch norms into their convolutions.
    scripted = run.json("info", "classifier.pt", "--json")["parameter_count"]
    assert 0.99 * scripted < info["parameter_count"] < scripted


def test_classifier_run_matches_python(run, ov, tmp_path):
    expected = np.load(ov / "classifier_ov_chelsea.npy")
    rtol = golden_rtol(str(ov / "classifier.ov"))
    result = run("run", "classifier.ov", "--input", "chelsea.png", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "output: FP32 [1, 1000]"
    assert_close(expected, np.load(tmp_path / "logits.npy"), rtol)
    # Python's eager module and the TorchScript archive give the same logits.
    assert_close(np.load(ov / "classifier_chelsea.npy"), np.load(tmp_path / "logits.npy"), rtol)


def test_classify_agrees_with_python_and_the_torchscript_archive(run, ov):
    for name in ("chelsea", "random_0", "random_1"):
        logits = np.load(ov / f"classifier_ov_{name}.npy")[0]
        atol = rule_atol(logits, golden_rtol(str(ov / "classifier.ov")))
        image = f"{name}.png"
        out = run.json("classify", "classifier.ov", image, "--json")["results"][0]
        assert_argmax_agrees(logits, np.argmax(logits, keepdims=True), np.array([out["index"]]),
                             0, atol)
    scripted = run.json("classify", "classifier.pt", "chelsea.png", "--json")["results"][0]
    ours = run.json("classify", "classifier.ov", "chelsea.png", "--json")["results"][0]
    assert (ours["index"], ours["label"]) == (scripted["index"], scripted["label"])


@pytest.mark.parametrize("name,cases", [("classifier.ov", 1), ("structured.ov", 5),
                                        ("tiny.ov", 4)])
def test_check_passes_on_exported_archives(run, ov, name, cases):
    result = run("check", name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith(f"PASS: {cases} golden case")
    out = run.json("check", name, "--json")
    assert out["ok"] is True and len(out["cases"]) == cases


def test_structured_outputs_keep_their_nesting(run, ov):
    with open(ov / "structured_expected.json") as f:  # the .pt2 fixture's Python reference
        expected = json.load(f)["output"]
    out = run.json("run", "structured.ov", "-i", "structured_input.npy", "-i", "3", "--json")
    assert list(out["outputs"]) == ["pair", "parts"]
    assert out["outputs"]["parts"][2]["datatype"] == "INT64"
    rtol = golden_rtol(str(ov / "structured.ov"))
    for key, index in [("pair", 0), ("pair", 1), ("parts", 0), ("parts", 1), ("parts", 2)]:
        assert_close(tensor_from_tree(expected[key][index]),
                     tensor_from_tree(out["outputs"][key][index]), rtol)
    assert_one_error(run("run", "structured.ov", "-i", "structured_input.npy", "-i", "5"),
                     "input 'k': the package was compiled with k = 3 (torch.export compiles "
                     "non-tensor arguments in), got 5; export it again for another value")


def test_batches_the_example_did_not_have_agree_with_python(run, ov, tmp_path):
    # tiny.ov records a static batch 1: C++ compiles the IR reshaped to it at load, and runs
    # the first part (one row) on it, the others on the dynamic IR.
    bench = run("bench", "tiny.ov", "--runs", "1", "--warmup", "0", "--optimize")
    assert bench.returncode == 0, bench.stderr
    assert "; also for static batch size 1" in next(
        line for line in bench.stdout.splitlines() if line.startswith("note "))
    items = np.random.default_rng(4).random((7, 3, 16, 16), dtype=np.float32)
    rtol = golden_rtol(str(ov / "tiny.ov"))
    whole = run.json("run", "tiny.ov", "-i", _saved(tmp_path, "all", items), "--json")["outputs"]
    for start, stop in [(0, 1), (1, 4), (4, 7)]:
        part = run.json("run", "tiny.ov", "-i", _saved(tmp_path, f"p{start}", items[start:stop]),
                        "--json")["outputs"]
        assert_close(tensor_from_tree(whole)[start:stop], tensor_from_tree(part), rtol)
    expected = np.load(ov / "tiny_ov_output.npy")
    given = run.json("run", "tiny.ov", "-i", "tiny_ov_input.npy", "--json")["outputs"]
    assert_close(expected, tensor_from_tree(given), rtol)


def _saved(folder: Path, name: str, array: np.ndarray) -> str:
    np.save(folder / f"{name}.npy", array)
    return str(folder / f"{name}.npy")


def test_inputs_of_another_type_or_shape_are_one_line(run, ov, tmp_path):
    assert_one_error(
        run("run", "tiny.ov", "-i", _saved(tmp_path, "d", np.zeros((2, 3, 16, 16)))),
        "input 'x': expected FP32 tensor of shape [-1, 3, 16, 16], got FP64 [2, 3, 16, 16]")
    assert_one_error(
        run("run", "tiny.ov", "-i", _saved(tmp_path, "s", np.zeros((2, 3, 16, 15), np.float32))),
        "input 'x': expected FP32 tensor of shape [-1, 3, 16, 16], got FP32 [2, 3, 16, 15]")


@needs_openvino
def test_without_input_specs_the_ir_refuses_in_one_line(run, tmp_path):
    """No manifest spec stands before the IR: its parameter's type and shape refuse."""
    torchship.export(Scale(), torch.rand(2, 3), str(tmp_path / "scale.ov"), format="openvino")
    assert_one_error(run("run", str(tmp_path / "scale.ov"), "-i",
                         _saved(tmp_path, "i", np.zeros((2, 3), np.int32))),
                     "input tensor 0: the OpenVINO model takes FP32 [?,?], got INT32 [2, 3]")
    assert_one_error(run("run", str(tmp_path / "scale.ov"), "-i",
                         _saved(tmp_path, "f", np.zeros((4, 3, 1), np.float32))),
                     "input tensor 0: the OpenVINO model takes FP32 [?,?], got FP32 [4, 3, 1]")


def rewritten(source: Path, target: Path, change) -> Path:
    """A copy of an archive with its records changed by change(name, data) -> data or None
    (left out); the zip's CRCs are those of the new bytes."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = change(info.filename.split("/", 1)[1], zin.read(info))
            if data is not None:
                zout.writestr(info, data)
    return target


def test_a_damaged_archive_is_refused_in_one_line(run, ov, tmp_path):
    broken = rewritten(ov / "tiny.ov", tmp_path / "broken.ov",
                       lambda name, data: data[:len(data) // 2] if name.endswith(".xml") else data)
    result = run("run", str(broken), "-i", "tiny_ov_input.npy")
    assert result.returncode == 2 and len(stderr_lines(result)) == 1, result.stderr
    assert stderr_lines(result)[0].startswith(
        f"{ERROR}cannot load {broken}: OpenVINO cannot read its IR: ")
    assert "Exception from" not in result.stderr and "src/" not in result.stderr
    no_spec = rewritten(ov / "tiny.ov", tmp_path / "no_spec.ov",
                        lambda name, data: None if name.endswith("call_spec.json") else data)
    assert_one_error(run("run", str(no_spec), "-i", "tiny_ov_input.npy"),
                     f"cannot load {no_spec}: the OpenVINO archive has no "
                     "openvino/call_spec.json")
    bad_spec = rewritten(ov / "tiny.ov", tmp_path / "bad_spec.ov",
                         lambda name, data: b'{"a": 1}' if name.endswith("call_spec.json")
                         else data)
    assert_one_error(run("run", str(bad_spec), "-i", "tiny_ov_input.npy"),
                     f"cannot load {bad_spec}: openvino/call_spec.json is not [input spec, "
                     "output spec]")


def test_precision_is_chosen_at_load_for_openvino_archives_only(run, ov):
    assert_one_error(run("run", "classifier.pt", "-i", "chelsea.png", "--precision", "bf16"),
                     "precision bf16 is chosen at load for OpenVINO archives only; classifier.pt "
                     "is TorchScript (export it with torchship.export(..., precision=\"bf16\") "
                     "instead)")
    # bf16 where the CPU computes it natively, fp32 elsewhere (OpenVINO's own fallback): the
    # golden check holds at bf16's tolerance either way.
    result = run("check", "tiny.ov", "--precision", "bf16")
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):  # oneDNN held below the CPU's ISA: refused in one line
        lines = result.stderr.splitlines()
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert lines[0].startswith("torchship: error: cannot ") and \
            lines[0].endswith("load it in fp32"), lines[0]
        return
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == (
        "PASS: 4 golden cases, tolerance |diff| <= atol + 0.01 * |expected|")


def test_a_build_without_openvino_refuses_in_one_line(ov, fixtures):
    """Only a build configured without OpenVINO shows it: the refusal names what is missing."""
    other = os.environ.get("TORCHSHIP_CLI_WITHOUT_OPENVINO")
    if not other:
        pytest.skip("set TORCHSHIP_CLI_WITHOUT_OPENVINO to a build with TORCHSHIP_OPENVINO=OFF")
    result = subprocess.run([other, "run", str(ov / "tiny.ov"), "-i",
                             str(ov / "tiny_ov_input.npy")], capture_output=True, text=True)
    assert result.returncode == 2
    assert stderr_lines(result)[0].startswith(
        ERROR + f"cannot load {ov / 'tiny.ov'}: it is an OpenVINO archive, and this torchship "
        "was built without OpenVINO")


# 3. the server

@pytest.fixture(scope="module")
def served(cli, ov, tmp_path_factory):
    repository = str(tmp_path_factory.mktemp("ov_repository"))
    for name, archive, config in [
            ("resnet", ov / "classifier.ov", None),
            ("tiny", ov / "tiny.ov", {"max_batch_size": 8, "max_queue_delay_us": 200000})]:
        os.makedirs(os.path.join(repository, name, "1"))
        shutil.copy(archive, os.path.join(repository, name, "1", "model.ov"))
        if config is not None:
            with open(os.path.join(repository, name, "config.json"), "w") as f:
                json.dump(config, f)
    server = Server(cli, repository, "--threads", "2", "--grpc-port", "0")
    yield server
    assert server.terminate() == 0


def test_serve_metadata_and_logits(served, ov):
    client = served.connect()
    meta = client.get("/v2/models/tiny").json()
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 16, 16]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 5]}]
    x = np.load(ov / "tiny_ov_input.npy")
    expected = np.load(ov / "tiny_ov_output.npy")
    rtol = golden_rtol(str(ov / "tiny.ov"))
    for binary in (False, True):
        response = client.infer("tiny", {"x": x}, binary_inputs=binary, binary_outputs=binary)
        assert response.status == 200, response.body
        assert_close(expected, response.outputs()["logits"], rtol)
    with open(ov / "chelsea.png", "rb") as f:
        classified = client.request("POST", "/v2/models/resnet/classify?top_k=1", f.read())
    assert classified.status == 200, classified.body
    logits = np.load(ov / "classifier_ov_chelsea.npy")[0]
    assert_argmax_agrees(logits, np.argmax(logits, keepdims=True),
                         np.array([classified.json()["predictions"][0]["index"]]), 0,
                         rule_atol(logits, rtol))
    wrong = client.infer("tiny", {"x": np.zeros((1, 3, 16, 8), np.float32)})
    assert (wrong.status, wrong.json()) == (400, {
        "error": "input 'x': expected FP32 tensor of shape [-1, 3, 16, 16], got FP32 [1, 3, 16, "
                 "8]"})


def test_serve_batches_concurrent_requests_over_http_and_grpc(served, ov):
    import tritonclient.grpc as grpcclient

    items = np.random.default_rng(5).random((16, 3, 16, 16), dtype=np.float32)
    client = served.connect()
    reference = client.infer("tiny", {"x": items[:8]})
    reference = np.concatenate([reference.outputs()["logits"],
                                client.infer("tiny", {"x": items[8:]}).outputs()["logits"]])
    rtol = golden_rtol(str(ov / "tiny.ov"))
    start = threading.Barrier(16)
    answers, errors = {}, []

    def send(index):
        start.wait()
        if index % 2:
            grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{served.grpc_port}")
            given = grpcclient.InferInput("x", [1, 3, 16, 16], "FP32")
            given.set_data_from_numpy(items[index:index + 1])
            answers[index] = grpc.infer("tiny", [given]).as_numpy("logits")
            grpc.close()
            return
        http = served.connect()
        response = http.infer("tiny", {"x": items[index:index + 1]}, binary_inputs=True,
                              binary_outputs=True)
        if response.status == 200:
            answers[index] = response.outputs()["logits"]
        else:
            errors.append(response.body)
        http.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and sorted(answers) == list(range(16))
    for index, logits in answers.items():
        assert_close(reference[index:index + 1], logits, rtol)
    metrics = client.get("/metrics").body.decode()
    executions = [line for line in metrics.splitlines()
                  if line.startswith('torchship_executions_total{model="tiny",version="1"}')]
    assert executions and float(executions[0].split()[-1]) < 2 + 16, "requests were batched"
