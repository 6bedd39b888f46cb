"""`torchship serve` as a child process on a loopback port (its log kept for assertions), the
model repository it serves, and the polling the tests and benchmarks do around it: a free port,
a route that answers, a condition that comes true, a Prometheus sample."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import Dict, List, Optional, Tuple

from harness.kserve_client import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answering(port: int, path: str = "/v2/health/ready", timeout: float = 120) -> None:
    """Polls GET path until it answers 200 (or 405: a route that exists for another method)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if Client("127.0.0.1", port, timeout=5).get(path).status in (200, 405):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered GET {path} on port {port} within {timeout:.0f} s")


def wait_for(condition, what: str, timeout: float = 60):
    """Polls `condition` until it returns something true, and returns that."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def metric(text: str, name: str) -> float:
    """The value of one sample (name with its labels) in Prometheus text; 0 when absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def make_repository(folder: str, models: Dict[str, Tuple[str, Optional[dict]]]) -> str:
    """models: name -> (archive, config or None), each as version 1."""
    for name, (archive, config) in models.items():
        os.makedirs(os.path.join(folder, name, "1"), exist_ok=True)
        shutil.copy(archive, os.path.join(folder, name, "1", "model.pt"))
        if config is not None:
            with open(os.path.join(folder, name, "config.json"), "w") as f:
                json.dump(config, f)
    return folder


def rss_of(pid: int, field: str = "VmRSS:", file: str = "status") -> int:
    """A process's resident set in kB (0 once it ended), or another field of /proc/PID/FILE."""
    try:
        with open(f"/proc/{pid}/{file}") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    """`torchship serve` on a free loopback port; the log is kept for assertions."""

    def __init__(self, cli, repository: str, *args: str, port: int = 0, env=None):
        # (cli: the program, or the command that runs it, as a list: podman exec ... torchship;
        # env: variables to set for it)
        command = [cli] if isinstance(cli, str) else list(cli)
        self.process = subprocess.Popen(
            [*command, "serve", "--model-repository", repository, "--port", str(port), *args],
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log: List[str] = []
        self.port = None
        deadline = time.time() + 120
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.log.append(line.rstrip("\n"))
            found = re.search(r"listening on http://[^:]+:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                grpc = re.search(r" and grpc://[^:]+:(\d+)", line)
                self.grpc_port = int(grpc.group(1)) if grpc else None
                break
        if self.port is None:
            self.process.kill()
            raise RuntimeError("torchship serve did not start:\n" + "\n".join(self.log))
        # Keep draining the log so that the server never blocks on a full pipe.
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.log.append(line.rstrip("\n"))

    def rss_kb(self) -> int:
        return rss_of(self.process.pid)

    def workers(self) -> List[int]:
        """Its child processes: the package workers (--package-workers)."""
        children = []
        for task in os.listdir(f"/proc/{self.process.pid}/task"):
            try:
                with open(f"/proc/{self.process.pid}/task/{task}/children") as f:
                    children += [int(pid) for pid in f.read().split()]
            except OSError:
                pass  # the thread ended meanwhile
        return children

    def total_rss_kb(self) -> int:
        """RSS of the server and its package workers together (pages of the same library files
        count once per process)."""
        return self.rss_kb() + sum(rss_of(pid) for pid in self.workers())

    def total_pss_kb(self) -> int:
        """The proportional set size of the server and its package workers: a page shared by
        them counts once in the sum, what the machine gives them all."""
        return sum(rss_of(pid, "Pss:", "smaps_rollup")
                   for pid in [self.process.pid, *self.workers()])

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/task"))

    def library_files(self) -> int:
        """The in-memory files its compiled libraries were loaded from: one per distinct
        library, each mapped for the server's life."""
        folder = f"/proc/{self.process.pid}/fd"
        count = 0
        for fd in os.listdir(folder):
            try:
                count += "torchship-aoti-library" in os.readlink(os.path.join(folder, fd))
            except OSError:
                pass  # closed meanwhile
        return count

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def connect(self) -> Client:
        return Client("127.0.0.1", self.port)
