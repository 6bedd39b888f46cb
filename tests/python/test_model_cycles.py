"""Model control over a server's life: hundreds of unload/load cycles over HTTP and gRPC, and
poll-mode reloads of a file replaced in place and renamed into place, with inferences in flight.

An AOTInductor package's compiled library cannot be unloaded (it registers thread-local
destructors in the threads that ran it), so every load used to map one more copy of it, its
weights included; torchship serve keeps loaded packages and gives a package loaded again the copy
it has (RuntimeOptions::keep_compiled_packages). These tests hold the server's resident memory,
open descriptors, mapped files (deleted ones included: the unpacked libraries) and temporary
folder to what they were once settled, report the growth without the reuse, and accept only 200
or a 404/503 naming the model's state from the requests sent meanwhile.

Settled: on glibc's heap, each new thread (each load starts its model's batcher) gets an arena of
its own, up to 8 per core, which keeps what is freed in it; the resident size grew by about 5%
over the first hundred cycles while the arenas appeared, then held (250 MB after 20 cycles,
263 MB after 100 and still after 500). The torchship program now runs on jemalloc
(cmake/torchshipAllocator.cmake), settled by cycle 20 (239, 239, 240 MB), so the bound counts
from cycle 20, as the issue sets it; the reports give the figure at the settled cycle as well."""

import glob
import os
import shutil
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from harness.server_process import Server, make_repository

grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] from PyPI")

# The heap keeps some freed memory: 5% is the bound the issue sets.
RSS_GROWTH = 0.05
IMAGES = np.zeros((1, 28, 28, 1), np.uint8)


def body():
    return ('{"inputs": [{"name": "images", "datatype": "UINT8", "shape": [1, 28, 28, 1], '
            '"data": [' + ",".join("0" * IMAGES.size) + "]}]}").encode()


class Probe:
    """The server process's resources, read from /proc, and its temporary folder's size."""

    def __init__(self, server, tmp):
        self.server, self.tmp = server, tmp

    def read(self):
        pid = self.server.process.pid
        with open(f"/proc/{pid}/maps") as f:
            maps = f.read().splitlines()
        deleted = sum("(deleted)" in line for line in maps)
        files = len({fields[5].strip() for fields in (line.split(None, 5) for line in maps)
                     if len(fields) == 6})
        size = sum(os.path.getsize(os.path.join(base, name))
                   for base, _, names in os.walk(self.tmp) for name in names)
        return {"rss_mb": self.server.rss_kb() / 1024, "fds": len(os.listdir(f"/proc/{pid}/fd")),
                "mapped_files": files, "deleted_mappings": deleted, "tmp_bytes": size}


class Traffic:
    """Inferences sent while models come and go: each answer's status is kept."""

    def __init__(self, port, model):
        self.url = f"http://127.0.0.1:{port}/v2/models/{model}/infer"
        self.statuses, self.bodies = [], []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        data = body()
        while not self.stopping.is_set():
            request = urllib.request.Request(self.url, data=data, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    self.statuses.append(answer.status)
            except urllib.error.HTTPError as error:
                self.statuses.append(error.code)
                self.bodies.append(error.read().decode())
            except Exception as error:  # a refused or dropped connection fails the test
                self.statuses.append(f"no answer: {error!r}")

    def stop(self) -> str:
        """Checks the answers; returns them counted, for the report."""
        self.stopping.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the traffic thread did not stop within 60 s"
        unexpected = [s for s in self.statuses if s not in (200, 404, 503)]
        assert not unexpected, (unexpected[:5], self.bodies[:5])
        # A refusal names the model's state (unloaded, not loaded yet, unavailable).
        for text in self.bodies:
            assert "unload" in text or "not loaded" in text or "unavailable" in text, text
        assert self.statuses.count(200) > 0, "no inference was answered between the cycles"
        refused = len(self.statuses) - self.statuses.count(200)
        return (f"{len(self.statuses)} inferences meanwhile, {self.statuses.count(200)} answered, "
                f"{refused} refused while the model was unloaded (404 or 503), none failed")


def post(port, path):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=120) as answer:
        return answer.status


def post_inference(port, model):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/{model}/infer",
                                     data=body(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return answer.status


def cycle_http(server, name):
    assert post(server.port, f"/v2/repository/models/{name}/unload") == 200
    assert post(server.port, f"/v2/repository/models/{name}/load") == 200


def run_cycles(server, tmp, cycles, one_cycle, settle=100):
    """Resources after 20 cycles, once settled (`settle` cycles), and after `cycles`."""
    probe = Probe(server, tmp)
    for _ in range(20):
        one_cycle()
    first = probe.read()
    for _ in range(settle - 20):
        one_cycle()
    settled = probe.read()
    for _ in range(cycles - settle):
        one_cycle()
    return first, settled, probe.read()


def assert_flat(early, late):
    assert late["rss_mb"] <= early["rss_mb"] * (1 + RSS_GROWTH), (early, late)
    assert late["fds"] <= early["fds"] + 2, (early, late)  # (the test's own connection)
    assert late["mapped_files"] <= early["mapped_files"], (early, late)
    assert late["deleted_mappings"] <= early["deleted_mappings"], (early, late)
    assert late["tmp_bytes"] == early["tmp_bytes"], (early, late)


def figure(first, settled, late, cycles, settle=100):
    return (f"RSS {first['rss_mb']:.0f} MB after 20 cycles, {settled['rss_mb']:.0f} MB after "
            f"{settle}, {late['rss_mb']:.0f} MB after {cycles} "
            f"({100 * (late['rss_mb'] / settled['rss_mb'] - 1):+.1f}% since {settle}); "
            f"deleted mappings {first['deleted_mappings']} / {late['deleted_mappings']}, "
            f"descriptors {first['fds']} / {late['fds']}, temporary bytes "
            f"{first['tmp_bytes']} / {late['tmp_bytes']}")


@pytest.fixture
def serve(cli, models, tmp_path):
    """Starts servers over a repository of the Fashion-MNIST pair, each with its own temporary
    folder; stops them at the end (exit code 0)."""
    started = []

    def start(*args, keep_packages=True):
        repository = make_repository(str(tmp_path / "repository"), {
            "fashion_pt2": (os.path.join(models, "fashion_mnist.pt2"), None),
            "fashion_pt": (os.path.join(models, "fashion_mnist.pt"), None),
        })
        tmp = tmp_path / "tmp"
        tmp.mkdir(exist_ok=True)
        server = Server(cli, repository, *args, env={
            "TMPDIR": str(tmp), "TORCHSHIP_KEEP_COMPILED_PACKAGES": "1" if keep_packages else "0"})
        started.append(server)
        return server, str(tmp), repository

    yield start
    for server in started:
        assert server.terminate() == 0, server.log[-20:]


def test_pt2_load_unload_over_http_keeps_memory_flat(serve, report):
    server, tmp, _ = serve("--model-control-mode", "explicit", "--load-model", "*")
    traffic = Traffic(server.port, "fashion_pt2")
    first, settled, late = run_cycles(server, tmp, 500,
                                      lambda: cycle_http(server, "fashion_pt2"))
    answers = traffic.stop()
    report(f"model cycles, .pt2 over HTTP, packages kept: {figure(first, settled, late, 500)}; "
           f"{answers}")
    assert_flat(first, late)


def test_pt2_growth_without_keeping_packages(serve, report):
    # What the reuse saves: the same cycles with it turned off (a figure, not a verdict on
    # libtorch: where its loader unloads cleanly, this grows less).
    server, tmp, _ = serve("--model-control-mode", "explicit", "--load-model", "*",
                           keep_packages=False)
    first, settled, late = run_cycles(server, tmp, 150, lambda: cycle_http(server, "fashion_pt2"))
    report(f"model cycles, .pt2 over HTTP, packages not kept: {figure(first, settled, late, 150)}")
    # Not kept, each package's unpacked files and descriptors still go with its model.
    assert late["tmp_bytes"] == first["tmp_bytes"], (first, late)
    assert late["fds"] <= first["fds"] + 2, (first, late)
    assert post_inference(server.port, "fashion_pt2") == 200


def test_pt2_and_pt_load_unload_over_grpc(serve, report):
    server, tmp, _ = serve("--model-control-mode", "explicit", "--load-model", "*",
                           "--grpc-port", "0")
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")

    def one_cycle():
        for name in ("fashion_pt2", "fashion_pt"):
            client.unload_model(name)
            client.load_model(name)

    # (two models a cycle: twice the threads come and go before the arenas settle)
    first, settled, late = run_cycles(server, tmp, 300, one_cycle, settle=150)
    report(f"model cycles, .pt2 and .pt over gRPC: {figure(first, settled, late, 300, 150)}")
    assert_flat(first, late)


def test_poll_mode_reloads_replaced_files_without_growing(serve, models, report):
    server, tmp, repository = serve("--model-control-mode", "poll", "--repository-poll-secs", "1")
    (target,) = glob.glob(os.path.join(repository, "fashion_pt2", "1", "model.*"))
    source = os.path.join(models, "fashion_mnist.pt2")
    traffic = Traffic(server.port, "fashion_pt2")
    reloads = []

    def one_cycle():
        # Alternately rewritten in place and renamed into place; a new modification time each
        # time, so the poll reloads it.
        if len(reloads) % 2 == 0:
            with open(source, "rb") as f, open(target, "r+b") as out:
                out.write(f.read())
        else:
            shutil.copy(source, target + ".new")
            os.replace(target + ".new", target)
        os.utime(target, ns=(time.time_ns(), time.time_ns() + len(reloads)))
        count = sum("loaded fashion_pt2" in line for line in server.log)
        deadline = time.time() + 30
        while sum("loaded fashion_pt2" in line for line in server.log) == count:
            assert time.time() < deadline, server.log[-10:]
            time.sleep(0.05)
        reloads.append(1)

    first, settled, late = run_cycles(server, tmp, 50, one_cycle, settle=25)
    answers = traffic.stop()
    report(f"model cycles, poll mode (replaced in place / renamed in): "
           f"{figure(first, settled, late, 50, settle=25)}; {answers}")
    assert_flat(first, late)
