"""Weights updates (torchship.export_weights, Model::with_weights, a server's new version): a
retrained module's weights run in every form of an archive exported before, without compiling;
an update of another module, form or archive is refused in one line and changes nothing; a
server takes one as a new version under 32 clients without a failed or half-swapped answer."""

import io
import json
import os
import shutil
import threading
import time
import zipfile

import numpy as np
import pytest
import torch

import torchship
from harness.server_process import Server
from torchship.weights_index import INDEX_FILE

from conftest import assert_close

pytestmark = pytest.mark.skipif(not hasattr(torch, "export"), reason="needs torch.export")

ENGINES = ("torchscript", "aoti", "openvino")
RTOL = 1e-4


class Net(torch.nn.Module):
    def __init__(self, stride: int = 1, classes: int = 4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1, stride=stride)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, classes)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        return self.fc(y.mean((2, 3)))


def retrained(seed: int) -> Net:
    """A Net with other weights, batch norm statistics included."""
    torch.manual_seed(seed)
    module = Net().eval()
    with torch.no_grad():
        module.bn.running_mean.normal_()
        module.bn.running_var.uniform_(0.5, 2.0)
    return module


def manifest() -> torchship.Manifest:
    return torchship.Manifest(inputs=[torchship.tensor_spec("x", "FP32", [-1, 3, 16, 16])],
                              batch_dim=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An archive of every form (AOTInductor with swappable weights and a static batch-1
    model), the same module's AOTInductor package with frozen weights, and updates of two
    retrained modules."""
    folder = tmp_path_factory.mktemp("weights")
    paths = {name: str(folder / name) for name in
             ("net.torchship", "frozen.pt2", "v2.weights", "v3.weights", "x.npy")}
    example = torch.rand(2, 3, 16, 16)
    base = retrained(0)
    torchship.export(base, example, paths["net.torchship"], manifest=manifest(), format="auto",
                     swappable_weights=True, static_batches=[1])
    torchship.export(base, example, paths["frozen.pt2"], manifest=manifest(), format="aoti",
                     static_batches=())
    torchship.export_weights(retrained(2), paths["net.torchship"], paths["v2.weights"])
    torchship.export_weights(retrained(3), paths["net.torchship"], paths["v3.weights"])
    x = torch.rand(1, 3, 16, 16)
    np.save(paths["x.npy"], x.numpy())
    with torch.no_grad():
        paths["outputs"] = {seed: retrained(seed)(x).numpy() for seed in (0, 2, 3)}
    paths["folder"] = str(folder)
    return paths


def output_of(run, exported, *args) -> np.ndarray:
    out = os.path.join(exported["folder"], "out")
    shutil.rmtree(out, ignore_errors=True)
    result = run("run", exported["net.torchship"], "-i", exported["x.npy"], "--out", out, *args)
    assert result.returncode == 0, result.stderr
    return np.load(os.path.join(out, "output.npy"))


def test_export_weights_updates_every_form(exported):
    result = torchship.export_weights(retrained(2), exported["net.torchship"],
                                      os.path.join(exported["folder"], "again.weights"))
    assert result.forms == list(ENGINES)
    assert all(error <= 1e-3 for error in result.max_errors.values()), result.max_errors


@pytest.mark.parametrize("engine", ENGINES)
def test_every_form_runs_the_update_and_keeps_its_own_without(run, exported, engine):
    new = output_of(run, exported, "--engine", engine, "--weights", exported["v2.weights"])
    assert_close(exported["outputs"][2], new, RTOL)
    assert not np.allclose(exported["outputs"][0], exported["outputs"][2], atol=1e-2)
    assert_close(exported["outputs"][0], output_of(run, exported, "--engine", engine), RTOL)
    check = run("check", exported["net.torchship"], "--engine", engine, "--weights",
                exported["v3.weights"])
    assert check.returncode == 0 and "PASS: " in check.stdout, check.stderr


def test_the_dynamic_model_beside_the_static_one_takes_the_update_too(run, exported):
    # Batch 1 runs on the package's static batch-1 model (the test above), batch 2 on the
    # dynamic one, whose constants the static one shares.
    two = np.concatenate([np.load(exported["x.npy"])] * 2)
    np.save(os.path.join(exported["folder"], "x2.npy"), two)
    out = os.path.join(exported["folder"], "out2")
    result = run("run", exported["net.torchship"], "--engine", "aoti", "--weights",
                 exported["v2.weights"], "-i", os.path.join(exported["folder"], "x2.npy"),
                 "--out", out)
    assert result.returncode == 0, result.stderr
    batch = np.load(os.path.join(out, "output.npy"))
    assert_close(np.concatenate([exported["outputs"][2]] * 2), batch, RTOL)


class Wide(torch.nn.Module):
    """50 MB of weights in three layers: large beside what a process holds anyway."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.ReLU(),
                                          torch.nn.Linear(2048, 2048), torch.nn.ReLU(),
                                          torch.nn.Linear(2048, 2048))

    def forward(self, x):
        return self.layers(x)


def test_a_swappable_package_holds_one_copy_of_its_weights(run, exported, tmp_path):
    """Loaded, a package with swappable weights and a static batch-1 model is within 1.2x its
    weights plus the fixed per-model F that docs/benchmarks.md states for the form (19 MB on the
    zoo), above a process running the same form with a few hundred bytes of weights: the static
    model runs on the dynamic one's constants, and the library holds code only."""
    torch.manual_seed(0)
    wide = Wide().eval()
    weights_mb = sum(p.numel() * 4 for p in wide.parameters()) / 1e6
    path = str(tmp_path / "wide.pt2")
    manifest = torchship.Manifest(inputs=[torchship.tensor_spec("x", "FP32", [-1, 2048])],
                                  batch_dim=True)
    torchship.export(wide, torch.rand(2, 2048), path, manifest=manifest, format="aoti",
                     swappable_weights=True, static_batches=[1])
    overhead = run.loaded_mb(exported["net.torchship"], "--engine", "aoti")
    loaded = run.loaded_mb(path)
    assert loaded - overhead <= 1.2 * weights_mb + 19, (overhead, loaded, weights_mb)


def refused(module, exported, base=None) -> str:
    with pytest.raises(torchship.ExportError) as error:
        torchship.export_weights(module, base or exported["net.torchship"],
                                 os.path.join(exported["folder"], "refused.weights"))
    assert not os.path.exists(os.path.join(exported["folder"], "refused.weights"))
    return str(error.value)


def test_a_module_of_other_shapes_is_refused_naming_the_tensor(exported):
    message = refused(Net(classes=5).eval(), exported)
    assert message == (f"the module is not the one {exported['net.torchship']} was exported "
                       "from: tensor 'fc.weight': the archive has float32 [4, 8], the module "
                       "float32 [5, 8]")


def test_a_module_of_other_settings_is_refused_naming_the_submodule(exported):
    message = refused(Net(stride=2).eval(), exported)
    assert message.endswith(
        "was exported from: module conv: the archive has Conv2d(3, 8, kernel_size=(3, 3), "
        "stride=(1, 1), padding=(1, 1)), the module Conv2d(3, 8, kernel_size=(3, 3), "
        "stride=(2, 2), padding=(1, 1))"), message


def test_a_module_of_other_code_is_refused_naming_its_forward(exported):
    def forward(self, x):
        return self.fc(torch.nn.functional.gelu(self.bn(self.conv(x))).mean((2, 3)))

    other = type("Net", (Net,), {"forward": forward})
    message = refused(other().eval(), exported)
    assert "was exported from: forward of Net: the archive has code " in message, message


def test_a_package_with_frozen_weights_takes_no_update(exported):
    message = refused(retrained(2), exported, exported["frozen.pt2"])
    assert message == (f"{exported['frozen.pt2']}: its AOTInductor model was compiled with "
                       "frozen weights, which cannot be replaced; export it with "
                       "swappable_weights=True")


def rewritten(source: str, target: str, change) -> str:
    """A copy of the zip `source` with `change(name, data)` applied to each record (None drops
    it)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = change(info.filename, old.read(info))
            if data is not None:
                new.writestr(info, data)
    return target


def test_an_archive_without_weights_index_is_refused_by_both_sides(run, exported):
    old = rewritten(exported["frozen.pt2"], os.path.join(exported["folder"], "old.pt2"),
                    lambda name, data: None if name.endswith(INDEX_FILE) else data)
    assert refused(retrained(2), exported, old) == (
        f"{old} has no {INDEX_FILE}: it was exported by an older torchship; export it again to "
        "update its weights")
    result = run("check", old, "--weights", exported["v2.weights"])
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"torchship: error: cannot apply {exported['v2.weights']} to {old}: it was exported "
        f"before weight updates (it has no {INDEX_FILE}): export it again")


def test_an_update_of_another_model_is_refused(run, exported, fixtures):
    result = run("check", "classifier.pt", "--weights", exported["v2.weights"])
    assert result.returncode == 2
    line = result.stderr.strip()
    assert line.startswith(f"torchship: error: cannot apply {exported['v2.weights']} to "
                           "classifier.pt: the update is for another model (net.torchship, "
                           "weights index "), line
    assert line.endswith("): torchship.export_weights names the difference"), line


def test_a_frozen_package_refuses_an_update_in_cpp_too(run, exported):
    result = run("check", exported["frozen.pt2"], "--weights", exported["v2.weights"])
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"torchship: error: cannot apply {exported['v2.weights']} to {exported['frozen.pt2']}: "
        "its AOTInductor model was compiled with frozen weights, which cannot be replaced "
        "(export it with swappable_weights=True)")


def test_a_damaged_update_is_refused_in_one_line(run, exported):
    folder = exported["folder"]
    as_model = run("run", exported["v2.weights"], "-i", exported["x.npy"])
    assert as_model.returncode == 2
    assert as_model.stderr.strip() == (
        f"torchship: error: cannot load {exported['v2.weights']}: this is a weights update "
        "(torchship.export_weights), not a model: load the archive it updates and apply it "
        "(Model::with_weights, torchship check --weights, or a server's new version)")
    with open(exported["v2.weights"], "rb") as f:
        data = f.read()
    truncated = os.path.join(folder, "truncated.weights")
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    result = run("check", exported["net.torchship"], "--weights", truncated)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"torchship: error: cannot load {truncated}: "), result.stderr

    wrong = np.zeros((5, 8), np.float32)
    buffer = io.BytesIO()
    np.save(buffer, wrong)
    reshaped = rewritten(exported["v2.weights"], os.path.join(folder, "reshaped.weights"),
                         lambda name, d: buffer.getvalue() if name.endswith("weights/4.npy")
                         else d)
    result = run("check", exported["net.torchship"], "--engine", "torchscript", "--weights",
                 reshaped)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"torchship: error: cannot apply {reshaped}: torchship/weights/4.npy holds FP32 [5, 8], "
        "its description [4, 8]"), result.stderr


def mixed_update(exported, path: str) -> str:
    """v2's weights with v3's golden vectors (same signature, same layout)."""
    def without_root(name: str) -> str:
        return name.split("/", 1)[1]

    with zipfile.ZipFile(exported["v3.weights"]) as v3:
        golden = {without_root(name): v3.read(name) for name in v3.namelist()
                  if "/torchship/golden/" in name}
    return rewritten(exported["v2.weights"], path,
                     lambda name, data: golden.get(without_root(name), data))


def test_new_weights_that_miss_their_golden_vectors_are_refused(run, exported):
    mixed = mixed_update(exported, os.path.join(exported["folder"], "mixed.weights"))
    for engine in ENGINES:
        result = run("check", exported["net.torchship"], "--engine", engine, "--weights", mixed)
        assert result.returncode == 2, (engine, result.returncode, result.stderr)
        assert result.stderr.strip().startswith(
            f"torchship: error: golden check failed for {exported['net.torchship']}: case 0, "
            "output: "), (engine, result.stderr)


def answers(server, x: np.ndarray, stop: threading.Event, results: list) -> None:
    """One client's answers, in the order it got them (each request sent after the last); a
    request that got no answer at all is recorded too, with no status."""
    client = server.connect()
    try:
        while not stop.is_set():
            response = client.infer("net", {"x": x})
            results.append((response.status, response.outputs()["output"]
                            if response.status == 200 else response.body))
    except Exception as error:  # noqa: BLE001 - the test asserts on it
        results.append((None, repr(error)))
    finally:
        client.close()


def add_version(repository: str, number: int, file: str, name: str) -> None:
    """A version folder filled beside the repository and renamed into it: complete at once."""
    staging = os.path.join(repository, "net", f".staging{number}")
    os.makedirs(staging)
    shutil.copy(file, os.path.join(staging, name))
    os.rename(staging, os.path.join(repository, "net", str(number)))


def wait_for_answers(answered, count: int, timeout: float = 120) -> None:
    """Until `count` more answers came, or fails after `timeout` seconds."""
    goal, deadline = answered() + count, time.monotonic() + timeout
    while answered() < goal:
        assert time.monotonic() < deadline, f"{goal - answered()} answers missing"
        time.sleep(0.01)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_server_takes_an_update_as_a_new_version_under_load(cli, exported, tmp_path, engine):
    repository = str(tmp_path / "repository")
    add_version(repository, 1, exported["net.torchship"], "model.torchship")
    with open(os.path.join(repository, "net", "config.json"), "w") as f:
        json.dump({"engine": engine}, f)
    server = Server(cli, repository, "--model-control-mode", "explicit", "--load-model", "net")
    x = np.load(exported["x.npy"])
    stop, per_client = threading.Event(), [[] for _ in range(32)]
    clients = [threading.Thread(target=answers, args=(server, x, stop, results))
               for results in per_client]

    def answered() -> int:
        return sum(len(results) for results in per_client)

    try:
        for client in clients:
            client.start()
        control = server.connect()
        add_version(repository, 2, exported["v2.weights"], "model.weights")
        loaded = control.request("POST", "/v2/repository/models/net/load")
        assert loaded.status == 200, loaded.body
        wait_for_answers(answered, 200)  # after the swap
        add_version(repository, 3, mixed_update(exported, str(tmp_path / "mixed.weights")),
                    "model.weights")
        failed = control.request("POST", "/v2/repository/models/net/load")
        assert failed.status == 400
        assert "model 'net' version 3: golden check failed for " in failed.json()["error"]
        wait_for_answers(answered, 200)  # the version before goes on serving
        version_1 = control.infer("net/versions/1", {"x": x})  # unchanged by the update
        assert np.allclose(version_1.outputs()["output"], exported["outputs"][0], rtol=RTOL,
                           atol=1e-5)
        control.close()
    finally:
        stop.set()
        for client in clients:
            client.join()
        server.terminate()
    old, new = exported["outputs"][0], exported["outputs"][2]
    switched = 0
    for results in per_client:
        statuses = {status for status, _ in results}
        assert statuses == {200}, [body for status, body in results if status != 200][:3]
        kinds = []
        for _, output in results:
            is_old = np.allclose(output, old, rtol=RTOL, atol=1e-5)
            is_new = np.allclose(output, new, rtol=RTOL, atol=1e-5)
            assert is_old != is_new, output  # one model's answer, never a mix
            kinds.append("new" if is_new else "old")
        # Once a client got the new version's answer, every later one is the new version's.
        assert kinds == sorted(kinds, key=lambda kind: kind == "new"), kinds
        assert kinds[-1] == "new"
        switched += kinds[0] == "old"
    assert switched > 0
    log = "\n".join(server.log)
    assert "loaded net v2 from " in log and "model.weights" in log, log


def retrained_update(base: str, seed: int, folder: str) -> str:
    path = os.path.join(folder, f"{os.path.basename(base)}.{seed}.weights")
    torchship.export_weights(retrained(seed), base, path)
    return path


def exported_net(path: str, seed: int = 0) -> str:
    """retrained(seed) as a .pt, or as a .pt2 with swappable weights (its library holds code
    only: the same graph compiles to the same library, whatever the weights)."""
    pt2 = path.endswith(".pt2")
    torchship.export(retrained(seed), torch.rand(2, 3, 16, 16), path, manifest=manifest(),
                     format="aoti" if pt2 else "torchscript",
                     **({"swappable_weights": True, "static_batches": ()} if pt2 else {}))
    return path


def replace_versions(cli, tmp_path, base: str, versions: range, settled: int,
                     new_version, seed_of=lambda version: version) -> dict:
    """Serves `base` as version 1 of 'net', then each of `versions` in turn, made by
    new_version(number) -> (file, name in the folder), in place of the one before (explicit
    control: the new folder added, the old removed, one load request), every answer checked
    against retrained(seed_of(number)). Returns RSS in kB and threads after versions `settled`
    and the last, and the server's library files at the end."""
    repository = str(tmp_path / "repository")
    add_version(repository, 1, base, "model" + os.path.splitext(base)[1])
    server = Server(cli, repository, "--model-control-mode", "explicit", "--load-model", "net")
    x = np.random.default_rng(0).random((1, 3, 16, 16), np.float32)
    rss = {}
    try:
        for version in versions:
            file, name = new_version(version)
            client = server.connect()  # after the export: an idle connection is closed
            add_version(repository, version, file, name)
            shutil.rmtree(os.path.join(repository, "net", str(version - 1)))
            loaded = client.request("POST", "/v2/repository/models/net/load")
            assert loaded.status == 200, loaded.body
            os.remove(file)
            answer = client.infer("net", {"x": x})
            with torch.no_grad():
                expected = retrained(seed_of(version))(torch.from_numpy(x)).numpy()
            assert_close(expected, answer.outputs()["output"], RTOL)
            if version in (settled, versions[-1]):
                rss[version] = server.rss_kb()
                rss[f"threads {version}"] = server.threads()
            client.close()
        rss["library files"] = server.library_files()
    finally:
        server.terminate()
    return rss


def assert_flat(rss: dict, first: int, last: int, what: str) -> None:
    print(f"{what}: RSS after version {first} {rss[first] // 1024} MB, after {last} "
          f"{rss[last] // 1024} MB; {rss['library files']} library files")
    assert rss[last] <= rss[first] * 1.05, f"RSS {rss[first] // 1024} -> {rss[last] // 1024} MB"
    # Loads run on the repository's one load thread: no thread (OpenMP's helpers) and no
    # per-thread state stays behind in each request thread that asked for one.
    assert rss[f"threads {last}"] == rss[f"threads {first}"], rss


@pytest.mark.parametrize("form", ["pt", "pt2"])
def test_new_versions_as_weights_updates_leave_nothing_behind(cli, tmp_path, form):
    """Model versions that arrive as weights updates, each replacing the last: every answer is
    the new weights', and RSS after 60 versions is within 5% of RSS after 10 (a .pt2's library
    is mapped once)."""
    base = exported_net(str(tmp_path / f"net.{form}"))
    rss = replace_versions(cli, tmp_path, base, range(2, 62), 11, lambda version: (
        retrained_update(base, version, str(tmp_path)), "model.weights"))
    assert_flat(rss, 11, 61, f"{form} updates")
    assert rss["library files"] == (1 if form == "pt2" else 0)


@pytest.mark.parametrize("form", ["pt", "pt2"])
def test_re_exported_versions_leave_nothing_behind(cli, tmp_path, form):
    """Versions that arrive as whole new exports of a retrained module (new bytes each): a
    .pt2 with swappable weights maps its library once, whatever the number of versions (the
    same graph compiles to the same library; each version's weights go into a new runner's own
    buffer, freed with it), and RSS after version 26 is within 5% of RSS after version 6 (the
    longer form, 100 versions: bench/new_versions.py). Each .pt2 export is an AOTInductor
    compile: from version 7 on, a .pt2 version is one of versions 3 to 6 again, made new bytes
    (its own zip comment), as a server cannot tell it from a re-export."""
    base = exported_net(str(tmp_path / f"net.{form}"))
    seed_of = (lambda version: version) if form == "pt" else \
        (lambda version: version if version <= 6 else 3 + version % 4)
    exports = {}  # seed -> path of its export, kept aside

    def new_version(version: int):
        seed, file = seed_of(version), str(tmp_path / f"v{version}.{form}")
        if seed not in exports:
            exports[seed] = exported_net(str(tmp_path / f"seed{seed}.{form}"), seed)
        shutil.copy(exports[seed], file)
        if version != seed:
            with zipfile.ZipFile(file, "a") as package:
                package.comment = f"version {version}".encode()
        return file, f"model.{form}"
    rss = replace_versions(cli, tmp_path, base, range(2, 27), 6, new_version, seed_of)
    assert_flat(rss, 6, 26, f"{form} re-exported")
    assert rss["library files"] == (1 if form == "pt2" else 0)
