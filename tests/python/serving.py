"""Test helpers for `torchship serve`: start a real server on a loopback port, and a small KServe v2
client that speaks JSON and Triton's binary tensor data extension the way tritonclient does
(Inference-Header-Content-Length, binary_data_size / binary_data parameters)."""

import http.client
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

import numpy as np

DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16,
          "INT32": np.int32, "INT64": np.int64, "FP16": np.float16, "FP32": np.float32,
          "FP64": np.float64}
DATATYPES = {np.dtype(v): k for k, v in DTYPES.items()}


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


def fashion_images(models: str, first: int, count: int) -> np.ndarray:
    """Fashion-MNIST test images first..first+count-1 as uint8 [count, 28, 28, 1]."""
    import cv2
    folder = os.path.join(models, "fashion_mnist_test")
    return np.stack([cv2.imread(os.path.join(folder, f"{i:05d}.png"), cv2.IMREAD_GRAYSCALE)
                     for i in range(first, first + count)])[..., None]


def fashion_reference(models: str) -> Tuple[np.ndarray, np.ndarray]:
    """Test images 0..63 and Python's logits for them, through torch.jit.load of the archive
    the servers serve."""
    import torch
    module = torch.jit.load(os.path.join(models, "fashion_mnist.pt")).eval()
    images = fashion_images(models, 0, 64)
    with torch.no_grad():
        return images, module(torch.from_numpy(images)).numpy()


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
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def connect(self) -> "Client":
        return Client("127.0.0.1", self.port)


class Response:
    def __init__(self, status: int, headers: Dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        length = self.headers.get("inference-header-content-length")
        text = self.body if length is None else self.body[:int(length)]
        return json.loads(text)

    def outputs(self) -> Dict[str, np.ndarray]:
        """Output tensors by name, from JSON data or the binary part."""
        header = self.json()
        offset = int(self.headers.get("inference-header-content-length", len(self.body)))
        tensors = {}
        for output in header["outputs"]:
            dtype = DTYPES[output["datatype"]]
            size = output.get("parameters", {}).get("binary_data_size")
            if size is None:
                tensors[output["name"]] = np.array(output["data"], dtype=dtype).reshape(
                    output["shape"])
            else:
                raw = self.body[offset:offset + size]
                offset += size
                tensors[output["name"]] = np.frombuffer(raw, dtype=dtype).reshape(
                    output["shape"])
        return tensors


class Client:
    """One keep-alive connection (http.client), like one tritonclient HTTP connection."""

    def __init__(self, host: str, port: int, timeout: float = 60):
        self.connection = http.client.HTTPConnection(host, port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes = b"",
                headers: Optional[Dict[str, str]] = None) -> Response:
        self.connection.request(method, path, body=body or None, headers=headers or {})
        response = self.connection.getresponse()
        data = response.read()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def get(self, path: str, headers=None) -> Response:
        return self.request("GET", path, headers=headers)

    def infer(self, model: str, inputs: Dict[str, np.ndarray], binary_inputs: bool = False,
              binary_outputs: bool = False, outputs: Optional[List[str]] = None,
              request_id: Optional[str] = None, headers=None) -> Response:
        body, extra = infer_body(inputs, binary_inputs, binary_outputs, outputs, request_id)
        return self.request("POST", f"/v2/models/{model}/infer", body,
                            {**extra, **(headers or {})})

    def close(self) -> None:
        self.connection.close()


def infer_body(inputs: Dict[str, np.ndarray], binary_inputs: bool = False,
               binary_outputs: bool = False, outputs: Optional[List[str]] = None,
               request_id: Optional[str] = None) -> Tuple[bytes, Dict[str, str]]:
    request: dict = {"inputs": []}
    if request_id is not None:
        request["id"] = request_id
    binary = b""
    for name, array in inputs.items():
        tensor = {"name": name, "datatype": DATATYPES[array.dtype], "shape": list(array.shape)}
        if binary_inputs:
            raw = np.ascontiguousarray(array).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            binary += raw
        else:
            tensor["data"] = array.flatten().tolist()
        request["inputs"].append(tensor)
    if outputs is not None:
        request["outputs"] = [{"name": name, "parameters": {"binary_data": binary_outputs}}
                              for name in outputs]
    elif binary_outputs:
        request["parameters"] = {"binary_data_output": True}
    header = json.dumps(request).encode()
    if not binary_inputs:
        return header, {"Content-Type": "application/json"}
    return header + binary, {"Inference-Header-Content-Length": str(len(header)),
                             "Content-Type": "application/octet-stream"}
