"""Package workers (`torchship serve --package-workers`): an AOTInductor package with its weights
compiled in is a new library each version, which glibc never unmaps from the process that ran
it; in a worker process of its own, it goes when the model is freed. A server that takes new
versions of such a package under 32 clients answers each request from one version, fails none,
and holds its memory (the server's and its workers' together); a worker that dies is replaced,
and the request that found it gone answered by the new one."""

import os
import re
import select
import shutil
import signal
import threading
import zipfile

import numpy as np
import pytest
import torch

import torchship
from harness.server_process import Server, wait_for
from test_weights_update import (RTOL, add_version, answers, exported_net, manifest,
                                 retrained, wait_for_answers)

pytestmark = pytest.mark.skipif(not hasattr(torch, "export"), reason="needs torch.export")


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    """Two retrained modules exported as default (frozen) packages, a swappable one, an input
    and each module's output on it."""
    folder = tmp_path_factory.mktemp("workers")
    paths = {}
    for seed in (0, 1):
        paths[seed] = str(folder / f"frozen{seed}.pt2")
        torchship.export(retrained(seed), torch.rand(2, 3, 16, 16), paths[seed],
                         manifest=manifest(), format="aoti", static_batches=[1])
    paths["swappable"] = exported_net(str(folder / "swappable.pt2"))
    paths["x"] = np.random.default_rng(0).random((1, 3, 16, 16), np.float32)
    with torch.no_grad():
        paths["outputs"] = {seed: retrained(seed)(torch.from_numpy(paths["x"])).numpy()
                            for seed in (0, 1)}
    paths["folder"] = str(folder)
    return paths


def new_library(source: str, target: str, version: int) -> str:
    """`source` with its compiled library made new bytes (a tail the loader ignores): what a
    retrained module's export is to a server, a library it has not mapped, at no compile."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename.endswith(".so"):
                data += f"version {version}".encode().ljust(4096, b"\0")
            new.writestr(item, data)
    return target


def wait_until_ended(pid: int, timeout: float = 30) -> None:
    """Until process `pid` ends (an event, not a poll)."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([handle], [], [], timeout)[0], f"process {pid} still runs"
    finally:
        os.close(handle)


def test_new_frozen_versions_under_load_leave_nothing_behind(cli, frozen, tmp_path):
    """20 new versions, each a library the server has not mapped, loaded while 32 clients ask:
    every answer 200 and one version's, the server maps none of them, one worker at the end,
    and the server's and workers' RSS after version 20 within 5% of it after version 5."""
    repository = str(tmp_path / "repository")
    add_version(repository, 1, frozen[0], "model.pt2")
    server = Server(cli, repository, "--model-control-mode", "explicit", "--load-model", "net",
                    "--package-workers", "frozen")
    x, outputs = frozen["x"], frozen["outputs"]
    stop, per_client = threading.Event(), [[] for _ in range(32)]
    clients = [threading.Thread(target=answers, args=(server, x, stop, results))
               for results in per_client]
    rss = {}
    try:
        for client in clients:
            client.start()
        control = server.connect()
        for version in range(2, 21):
            file = new_library(frozen[version % 2], str(tmp_path / f"v{version}.pt2"), version)
            add_version(repository, version, file, "model.pt2")
            shutil.rmtree(os.path.join(repository, "net", str(version - 1)))
            loaded = control.request("POST", "/v2/repository/models/net/load")
            assert loaded.status == 200, loaded.body
            wait_for_answers(lambda: sum(len(results) for results in per_client), 50)
            if version in (5, 20):
                wait_for(lambda: len(server.workers()) == 1, "the old version's worker ends")
                rss[version] = server.total_rss_kb()
        library_files = server.library_files()
        control.close()
    finally:
        stop.set()
        for client in clients:
            client.join()
        server.terminate()
    print(f"server and worker RSS after version 5 {rss[5] // 1024} MB, "
          f"after 20 {rss[20] // 1024} MB")
    assert rss[20] <= rss[5] * 1.05, rss
    assert library_files == 0  # every version's library was mapped in a worker
    for results in per_client:
        assert {status for status, _ in results} == {200}, \
            [body for status, body in results if status != 200][:3]
        for _, output in results:
            is_0 = np.allclose(output, outputs[0], rtol=RTOL, atol=1e-5)
            is_1 = np.allclose(output, outputs[1], rtol=RTOL, atol=1e-5)
            assert is_0 != is_1, output  # one version's answer
    assert np.allclose(per_client[0][-1][1], outputs[0], rtol=RTOL, atol=1e-5)  # version 20's


def test_a_killed_worker_is_replaced_and_the_next_request_answered(cli, frozen, tmp_path):
    """A frozen package runs in a worker, a swappable one (its library shared by every version)
    in the server. A worker killed between requests: the next request, which never reached it,
    is answered by a new worker in its place, and the other model answers on; an unload ends
    the worker. (A request that reached a worker that then ended fails with how it ended:
    tests/cpp/test_worker_channel.cpp.)"""
    repository = str(tmp_path / "repository")
    add_version(repository, 1, frozen[1], "model.pt2")
    os.makedirs(os.path.join(repository, "swappable", "1"))
    shutil.copy(frozen["swappable"], os.path.join(repository, "swappable", "1", "model.pt2"))
    server = Server(cli, repository, "--model-control-mode", "explicit", "--load-model", "*",
                    "--package-workers", "frozen")
    x = frozen["x"]
    try:
        client = server.connect()
        [worker] = server.workers()
        answer = client.infer("net", {"x": x})
        assert answer.status == 200, answer.body
        assert np.allclose(answer.outputs()["output"], frozen["outputs"][1], rtol=RTOL, atol=1e-5)
        os.kill(worker, signal.SIGKILL)
        wait_until_ended(worker)
        answer = client.infer("net", {"x": x})
        assert answer.status == 200, answer.body
        assert np.allclose(answer.outputs()["output"], frozen["outputs"][1], rtol=RTOL, atol=1e-5)
        [new_worker] = server.workers()
        assert new_worker != worker
        assert client.infer("swappable", {"x": x}).status == 200
        unloaded = client.request("POST", "/v2/repository/models/net/unload")
        assert unloaded.status == 200, unloaded.body
        wait_until_ended(new_worker)
        wait_for(lambda: server.workers() == [], "the server collects its ended worker")
        client.close()
    finally:
        server.terminate()


def test_a_package_that_does_not_load_in_its_worker_is_refused_as_in_the_server(
        cli, frozen, tmp_path):
    """The worker's load failure comes back as the server's own would: the same one line."""
    repository = str(tmp_path / "repository")
    damaged = str(tmp_path / "damaged.pt2")
    with zipfile.ZipFile(frozen[0]) as old, zipfile.ZipFile(damaged, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            new.writestr(item, data[:100] if item.filename.endswith(".so") else data)
    add_version(repository, 1, damaged, "model.pt2")
    messages = {}
    for workers in ("off", "all"):
        server = Server(cli, repository, "--model-control-mode", "explicit",
                        "--package-workers", workers)
        try:
            client = server.connect()
            failed = client.request("POST", "/v2/repository/models/net/load")
            assert failed.status == 400, failed.body
            messages[workers] = failed.json()["error"]
            assert server.workers() == []
            client.close()
        finally:
            server.terminate()
    # (AOTInductor's loader names the folder it unpacked to: a new name each time)
    same = {workers: re.sub(r"aotinductor_\w+", "aotinductor_*", message)
            for workers, message in messages.items()}
    assert same["all"] == same["off"]
    assert f"cannot load {repository}/net/1/model.pt2: " in messages["all"], messages
