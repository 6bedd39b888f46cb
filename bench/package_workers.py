"""What a package worker costs (`torchship serve --package-workers`): the same AOTInductor
packages served in the server's process and each in a worker process of its own, one after the
other, interleaved per round.

Per package: the time from a load request to its answer (a worker is a new process that loads
libtorch, then the package), the latency of one request at a time (HTTP, binary tensors; the
worker adds a copy of the inputs and outputs across a Unix socket each way), requests per second
from 8 clients, and memory once loaded: RSS (the server's and the worker's summed: pages of the
same library files count in each) and PSS (each shared page split between the processes that
map it: what the machine gives them).

    python -m bench package_workers [--packages A.pt2,B.pt2] [--requests 200] [--rounds 2]

Default packages: the demo's Fashion-MNIST package (build/models) and the zoo's ResNet-50,
MobileNetV3-Large and EfficientNet-B0 packages where `python -m bench zoo` left them
($TORCHSHIP_ZOO_EXPORTS, default /tmp/ws). Results: bench/results/package-workers.json, and a
table on stdout for docs/serving.md.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

import numpy as np

from harness.server_process import Server

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("TORCHSHIP_BUILD", os.path.join(ROOT, "build"))
RESULTS = os.path.join(ROOT, "bench", "results", "package-workers.json")
ZOO = os.environ.get("TORCHSHIP_ZOO_EXPORTS", "/tmp/ws")
DEFAULT_PACKAGES = [os.path.join(BUILD, "models", "fashion_mnist.pt2")] + [
    os.path.join(ZOO, f"{name}.pt2") for name in ("resnet50", "mobilenet_v3_large",
                                                   "efficientnet_b0")]


def example_inputs(client) -> Dict[str, np.ndarray]:
    """One batch-1 input per tensor the model's metadata lists, random."""
    metadata = client.get("/v2/models/net").json()
    dtypes = {"FP32": np.float32, "UINT8": np.uint8, "INT64": np.int64}
    rng = np.random.default_rng(0)
    inputs = {}
    for spec in metadata["inputs"]:
        shape = [1 if size == -1 else size for size in spec["shape"]]
        inputs[spec["name"]] = (rng.random(shape) * 255).astype(dtypes[spec["datatype"]])
    return inputs


def throughput(server, inputs, clients: int, seconds: float) -> float:
    stop, counts, failures = threading.Event(), [0] * clients, []

    def ask(index: int) -> None:
        client = server.connect()
        try:
            while not stop.is_set():
                answer = client.infer("net", inputs, binary_inputs=True)
                if answer.status != 200:
                    failures.append(answer.body)
                    return
                counts[index] += 1
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(repr(error))
        finally:
            client.close()
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
    return sum(counts) / seconds


def measure(package: str, workers: str, requests: int) -> dict:
    with tempfile.TemporaryDirectory() as repository:
        os.makedirs(os.path.join(repository, "net", "1"))
        shutil.copy(package, os.path.join(repository, "net", "1", "model.pt2"))
        server = Server(os.path.join(BUILD, "bin", "torchship"), repository,
                        "--model-control-mode", "explicit", "--package-workers", workers,
                        "--warmup", "0")
        try:
            client = server.connect()
            started = time.perf_counter()
            loaded = client.request("POST", "/v2/repository/models/net/load")
            load_s = time.perf_counter() - started
            assert loaded.status == 200, loaded.body
            inputs = example_inputs(client)
            for _ in range(10):  # warm: the first forwards allocate
                assert client.infer("net", inputs, binary_inputs=True).status == 200
            latencies = []
            for _ in range(requests):
                started = time.perf_counter()
                assert client.infer("net", inputs, binary_inputs=True).status == 200
                latencies.append((time.perf_counter() - started) * 1000)
            client.close()
            per_second = throughput(server, inputs, 8, 5)
            assert len(server.workers()) == (1 if workers == "all" else 0)
            return {"load_s": round(load_s, 2), "median_ms": round(statistics.median(latencies), 3),
                    "p99_ms": round(sorted(latencies)[int(len(latencies) * 0.99) - 1], 3),
                    "requests_per_s": round(per_second, 1),
                    "rss_mb": server.total_rss_kb() // 1024,
                    "pss_mb": server.total_pss_kb() // 1024,
                    "workers": len(server.workers()) if workers == "all" else 0}
        finally:
            server.terminate()


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", default=",".join(DEFAULT_PACKAGES))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    packages = [p for p in args.packages.split(",") if os.path.exists(p)]
    results: Dict[str, Dict[str, List[dict]]] = {}
    for round_ in range(1, args.rounds + 1):
        for package in packages:
            name = os.path.splitext(os.path.basename(package))[0]
            for workers in ("off", "all"):
                if sys.stderr.isatty():
                    print(f"\r  round {round_}/{args.rounds}: {name}, workers {workers}   ",
                          end="", file=sys.stderr, flush=True)
                result = measure(package, workers, args.requests)
                results.setdefault(name, {}).setdefault(workers, []).append(result)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    best = {name: {workers: {key: (max if key == "requests_per_s" else min)(
        run[key] for run in runs) for key in runs[0]} for workers, runs in by.items()}
        for name, by in results.items()}
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                   "rounds": results, "best": best}, f, indent=2)
    print("| package | load, s | median latency, ms | p99, ms | requests/s, 8 clients "
          "| RSS, MB | PSS, MB |\n|---|---|---|---|---|---|---|")
    for name, by in best.items():
        off, worker = by["off"], by["all"]
        print(f"| {name} | {off['load_s']} → {worker['load_s']} | {off['median_ms']} → "
              f"{worker['median_ms']} | {off['p99_ms']} → {worker['p99_ms']} | "
              f"{off['requests_per_s']} → {worker['requests_per_s']} | "
              f"{off['rss_mb']} → {worker['rss_mb']} | {off['pss_mb']} → {worker['pss_mb']} |")


if __name__ == "__main__":
    main()
