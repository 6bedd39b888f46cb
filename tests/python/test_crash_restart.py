"""A poll-mode server and the model files written under it: a write seen half-way is refused and
reported while the version loaded before goes on serving, and a server killed with SIGKILL in the
middle of an update (the writer killed with it, the file left half-written) comes back serving
what is whole, reports what is not, and loads the file once it is finished.

A half-written archive is either cut off (no zip directory at its end) or, when rewritten in
place without truncating, the new file's head over the old file's tail: torchship checks every
record against its CRC-32 before libtorch reads it, and a file that changes while it loads is
dropped (docs/serving.md, "Updating models")."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import zipfile

import numpy as np
import torch

from conftest import fashion_reference
from harness.kserve_client import Client
from harness.server_process import Server, make_repository, wait_for

TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}
# The writer: copies SOURCE to TARGET in 40 pieces, 0.1 s apart, as a slow deploy would
# (mode "wb" truncates first; "r+b" overwrites in place).
WRITER = r"""
import sys, time
source, target, mode = sys.argv[1:4]
data = open(source, "rb").read()
with open(target, mode) as out:
    step = len(data) // 40 + 1
    for at in range(0, len(data), step):
        out.write(data[at:at + step])
        out.flush()
        print(at + step, flush=True)
        time.sleep(0.1)
print("done", flush=True)
"""


def variant_of(archive, out):
    """The same model saved again with a padding file first: other bytes from the first record
    on, so that its head written over the original's tail is a torn file."""
    with zipfile.ZipFile(archive) as z:
        names = [name.split("/extra/", 1)[1] for name in z.namelist() if "/extra/" in name]
    extra = dict.fromkeys(names, "")
    module = torch.jit.load(archive, _extra_files=extra)
    torch.jit.save(module, out, _extra_files={"deploy-note.txt": "v2 " * 2000, **extra})
    with open(archive, "rb") as a, open(out, "rb") as b:
        assert a.read(4096) != b.read(4096)
    return out


def index(server):
    answer = Client("127.0.0.1", server.port).request("POST", "/v2/repository/index", b"{}")
    assert answer.status == 200
    return {(entry["name"], entry.get("version")): (entry.get("state"), entry.get("reason", ""))
            for entry in answer.json()}


class Inferences:
    """Fashion-MNIST inferences sent in a loop to a model (any version): each answer's status,
    and whether its logits were Python's."""

    def __init__(self, port, model, images, logits):
        self.port, self.model = port, model
        self.images, self.logits = images[:4], logits[:4]
        self.statuses, self.wrong = [], 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        client = Client("127.0.0.1", self.port)
        while not self.stopping.is_set():
            answer = client.infer(self.model, {"images": self.images}, binary_outputs=True)
            self.statuses.append(answer.status)
            if answer.status == 200 and not np.allclose(answer.outputs()["logits"], self.logits,
                                                        **TOLERANCE):
                self.wrong += 1
            time.sleep(0.02)

    def stop(self):
        self.stopping.set()
        self.thread.join()
        return self.statuses


def start_writer(source, target, mode):
    return subprocess.Popen([sys.executable, "-c", WRITER, source, target, mode],
                            stdout=subprocess.PIPE, text=True)


def written_until(writer, fraction, size):
    """Reads the writer's progress until it has written `fraction` of `size` bytes."""
    for line in writer.stdout:
        if line.strip() == "done" or int(line) >= fraction * size:
            return


def test_a_write_seen_half_way_is_refused_and_the_loaded_version_keeps_serving(cli, models,
                                                                                tmp_path):
    images, logits = fashion_reference(models)
    archive = os.path.join(models, "fashion_mnist.pt")
    variant = variant_of(archive, str(tmp_path / "variant.pt"))
    repository = make_repository(str(tmp_path / "repository"), {"fashion": (archive, None)})
    target = os.path.join(repository, "fashion", "1", "model.pt")
    server = Server(cli, repository, "--model-control-mode", "poll", "--repository-poll-secs",
                    "1")
    try:
        traffic = Inferences(server.port, "fashion", images, logits)
        # Overwritten in place by a longer file, then truncated and rewritten, each over 4 s:
        # every poll during the write sees a partial file.
        for source, mode in ((variant, "r+b"), (archive, "wb")):
            logged = len(server.log)
            writer = start_writer(source, target, mode)
            writer.stdout.read()
            assert writer.wait() == 0
            wait_for(lambda: any("reloaded fashion v1" in line for line in server.log[logged:]),
                     "the finished file reloaded")
            time.sleep(2.5)  # two more polls: nothing else to load
            lines = server.log[logged:]
            refusals = [line for line in lines if line.startswith(
                f"torchship: error: model 'fashion' version 1: cannot load {target}: ")]
            reloads = [line for line in lines if "reloaded fashion v1" in line]
            # The partial file was seen, refused and reported; only the finished one loaded.
            assert len(refusals) >= 2, lines
            assert all(line.endswith("(the version loaded before goes on serving)")
                       for line in refusals), refusals
            assert len(reloads) == 1, lines
            assert lines.index(reloads[0]) > lines.index(refusals[-1]), lines
            print(f"{mode}: {len(refusals)} refusals while written, e.g. {refusals[0]}")
        statuses = traffic.stop()
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        assert traffic.wrong == 0
        print(f"{len(statuses)} inferences during the writes, all 200 with Python's logits")
    finally:
        assert server.terminate() == 0


def test_a_server_killed_mid_update_comes_back_serving_what_is_whole(cli, models, tmp_path):
    images, logits = fashion_reference(models)
    archive = os.path.join(models, "fashion_mnist.pt")
    variant = variant_of(archive, str(tmp_path / "variant.pt"))
    repository = make_repository(str(tmp_path / "repository"), {
        "fashion": (archive, None), "replaced": (archive, None)})
    new_version = os.path.join(repository, "fashion", "2", "model.pt")
    replaced = os.path.join(repository, "replaced", "1", "model.pt")
    os.makedirs(os.path.dirname(new_version))
    arguments = ("--model-control-mode", "poll", "--repository-poll-secs", "1")
    server = Server(cli, repository, *arguments)
    size = os.path.getsize(archive)
    # Two updates under way when the machine goes: a new version written in place, and the
    # only version of another model overwritten in place. Server and writers die together.
    writers = [start_writer(archive, new_version, "wb"), start_writer(variant, replaced, "r+b")]
    for writer in writers:
        written_until(writer, 0.5, size)
    server.process.send_signal(signal.SIGKILL)
    for writer in writers:
        writer.kill()
        writer.wait()
    server.process.wait()
    assert os.path.getsize(new_version) < size

    server = Server(cli, repository, *arguments)
    try:
        client = Client("127.0.0.1", server.port)
        # What is whole serves: fashion v1 answers requests that name no version.
        answer = client.infer("fashion", {"images": images[:4]}, binary_outputs=True)
        assert answer.status == 200 and answer.json()["model_version"] == "1"
        np.testing.assert_allclose(answer.outputs()["logits"], logits[:4], **TOLERANCE)
        # What is not is reported, by the index and the log, and never serves.
        states = index(server)
        assert states[("fashion", "1")] == ("READY", "")
        for model, version, path in (("fashion", "2", new_version), ("replaced", "1", replaced)):
            state, reason = states[(model, version)]
            assert state == "UNAVAILABLE", states
            assert reason.startswith(f"cannot load {path}: the zip is truncated or corrupt"), \
                reason
            assert any(line.startswith(f"torchship: error: model '{model}' version {version}: "
                                       f"cannot load {path}: the zip is truncated or corrupt")
                       for line in server.log), server.log
        missing = client.request("POST", "/v2/models/replaced/infer", b"{}")
        assert missing.status == 404, missing.body
        assert missing.json()["error"] == ("model 'replaced' is not loaded (GET "
                                           "/v2/repository/index says why)")
        versioned = client.request("POST", "/v2/models/fashion/versions/2/infer", b"{}")
        assert versioned.status == 404, versioned.body

        # The deploy runs again to the end: both files load at the next poll and serve.
        shutil.copy(archive, new_version)
        shutil.copy(variant, replaced)
        wait_for(lambda: index(server).get(("replaced", "1")) == ("READY", "")
                 and index(server).get(("fashion", "2")) == ("READY", ""), "both loaded")
        for model, version in (("fashion", "2"), ("replaced", "1")):
            answer = client.infer(model, {"images": images[:4]}, binary_outputs=True)
            assert answer.status == 200 and answer.json()["model_version"] == version
            np.testing.assert_allclose(answer.outputs()["logits"], logits[:4], **TOLERANCE)
    finally:
        assert server.terminate() == 0
