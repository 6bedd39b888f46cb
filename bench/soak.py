"""Soak: one `torchship serve` under mixed traffic for minutes or hours. Three models with dynamic
batching (Fashion-MNIST as TorchScript fp32, as an AOTInductor package, and quantized int8);
32 clients (build/bin/torchship-load --mix, C++) sending HTTP JSON, HTTP binary and gRPC
requests to all three, 5% of them malformed; every --reload-secs one model's file is replaced
(written beside, renamed into place) and the server, polling the repository, reloads it; the
server's resident memory is sampled every second.

Reported: requests answered, lost (no answer), 5xx (gRPC: UNKNOWN, DEADLINE_EXCEEDED, INTERNAL,
UNAVAILABLE), answers other than expected (200 / OK for valid requests, 400 / INVALID_ARGUMENT
for malformed ones), p50 and p99 latency per protocol in the first and the last minute, and RSS
over time: its growth from the end of the first minute (the warm-up) to the end.

    python -m bench soak --minutes 30 [--reload-secs 60] [--doc]

--doc writes the RSS plot, docs/soak-rss.svg (docs/serving.md shows it); bench/results/soak.json
keeps the figures either way. tests/python/test_soak.py runs the short form (2.5 minutes, two
reloads) in CI. Run with the PyPI stack's interpreter (scripts/env.sh's $PY): the gRPC
requests are built with tritonclient's protobuf classes.
"""

import argparse
import csv
import datetime
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from bench.runners import cpu_model
from harness.fashion_data import fashion_images
from harness.kserve_client import infer_body
from harness.server_process import Server, make_repository

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

BUILD = os.environ.get("TORCHSHIP_BUILD", os.path.join(ROOT, "build"))
RESULTS = os.path.join(ROOT, "bench", "results", "soak.json")
SVG = os.path.join(ROOT, "docs", "soak-rss.svg")
PROTOCOLS = ("http-json", "http-binary", "grpc")
BATCHING = {"max_batch_size": 8, "max_queue_delay_us": 1000}
MODELS = {"fashion": "fashion_mnist.pt", "fashion_pt2": "fashion_mnist.pt2",
          "fashion_int8": "fashion_mnist_int8.pt"}
MALFORMED_SHARE = 0.05
GRPC_OK, GRPC_INVALID_ARGUMENT = 1000, 1003
# Answers that mean the server failed, not the request: HTTP 5xx, and gRPC's UNKNOWN,
# DEADLINE_EXCEEDED, INTERNAL and UNAVAILABLE.
GRPC_SERVER_ERRORS = {1002, 1004, 1013, 1014}


def grpc_bytes(model: str, name: str, datatype: str, shape: List[int], raw: bytes) -> bytes:
    from tritonclient.grpc import service_pb2
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request.SerializeToString()


def write_kinds(folder: str, image: np.ndarray) -> List[dict]:
    """The mix: every model over every protocol (95% of the requests), and five malformed
    requests spread over the protocols and models (5%)."""
    kinds = []

    def add(name, protocol, model, payload, weight, valid, header_length=None):
        path = os.path.join(folder, f"{len(kinds)}.request")
        with open(path, "wb") as f:
            f.write(payload)
        kind = {"name": name, "protocol": protocol.split("-")[0], "model": model,
                "request": path, "weight": weight, "valid": valid, "label": protocol}
        if header_length is not None:
            kind["header_length"] = int(header_length)
        kinds.append(kind)

    valid_weight = (1 - MALFORMED_SHARE) / (len(MODELS) * len(PROTOCOLS))
    for model in MODELS:
        body, _ = infer_body({"images": image})
        add(f"{model} http-json", "http-json", model, body, valid_weight, True)
        body, headers = infer_body({"images": image}, binary_inputs=True, binary_outputs=True)
        add(f"{model} http-binary", "http-binary", model, body, valid_weight, True,
            headers["Inference-Header-Content-Length"])
        add(f"{model} grpc", "grpc", model,
            grpc_bytes(model, "images", "UINT8", list(image.shape), image.tobytes()),
            valid_weight, True)
    bad_weight = MALFORMED_SHARE / 5
    body, _ = infer_body({"images": image})
    add("json: shape claims more than the data", "http-json", "fashion",
        body.replace(b"[1, 28, 28, 1]", b"[2, 28, 28, 1]"), bad_weight, False)
    add("json: not JSON", "http-json", "fashion_int8", b'{"inputs": [{"name": ', bad_weight, False)
    body, headers = infer_body({"images": image}, binary_inputs=True)
    add("binary: header length past the body", "http-binary", "fashion_pt2", body, bad_weight,
        False, len(body) + 10)
    add("grpc: FP32 for a UINT8 input", "grpc", "fashion_pt2",
        grpc_bytes("fashion_pt2", "images", "FP32", list(image.shape), image.tobytes() * 4),
        bad_weight, False)
    add("grpc: raw contents shorter than the shape", "grpc", "fashion",
        grpc_bytes("fashion", "images", "UINT8", list(image.shape), image.tobytes()[:100]),
        bad_weight, False)
    return kinds


class Sampler:
    """The server's resident memory, every second."""

    def __init__(self, server: Server):
        self.server, self.samples = server, []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        started = time.time()
        while not self.stopping.wait(1.0 - (time.time() - started) % 1.0):
            self.samples.append((time.time() - started, self.server.rss_kb() / 1024))

    def stop(self):
        self.stopping.set()
        self.thread.join()


class Reloader:
    """Every `period` seconds, one model's file (in turn) replaced by a fresh copy, renamed into
    place; waits for the server to log the reload."""

    def __init__(self, server: Server, repository: str, sources: Dict[str, str], period: float,
                 until: float):
        self.server, self.repository, self.sources = server, repository, sources
        self.period, self.until, self.times, self.failures = period, until, [], []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        started, names, turn = time.time(), list(self.sources), 0
        while not self.stopping.wait(self.period - (time.time() - started) % self.period):
            if time.time() - started > self.until:
                return  # too close to the end to see the reload through
            model = names[turn % len(names)]
            turn += 1
            suffix = os.path.splitext(self.sources[model])[1]
            target = os.path.join(self.repository, model, "1", "model" + suffix)
            count = sum(f"reloaded {model} v1" in line for line in self.server.log)
            shutil.copy(self.sources[model], target + ".new")
            os.utime(target + ".new", ns=(time.time_ns(), time.time_ns()))
            os.replace(target + ".new", target)
            self.times.append(time.time() - started)
            deadline = time.time() + 60
            while sum(f"reloaded {model} v1" in line for line in self.server.log) == count:
                if time.time() > deadline:
                    self.failures.append(f"{model} not reloaded at {self.times[-1]:.0f} s")
                    break
                time.sleep(0.1)

    def stop(self):
        self.stopping.set()
        self.thread.join()


def percentiles(values: List[float]) -> Tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def analyse(trace: str, kinds: List[dict], seconds: float, rss: List[Tuple[float, float]],
            reloads: List[float]) -> dict:
    answers = total = lost = server_errors = 0
    unexpected: Dict[str, int] = {}
    minute = min(60.0, seconds / 2)
    first = {p: [] for p in PROTOCOLS}
    last = {p: [] for p in PROTOCOLS}
    with open(trace) as f:
        for row in csv.DictReader(f):
            total += 1
            at, kind = float(row["seconds"]), kinds[int(row["kind"])]
            latency, outcome = float(row["latency_ms"]), int(row["outcome"])
            if outcome == -1:
                lost += 1
                continue
            answers += 1
            if 500 <= outcome < 600 or outcome in GRPC_SERVER_ERRORS:
                server_errors += 1
            expected = ((200, GRPC_OK) if kind["valid"] else (400, GRPC_INVALID_ARGUMENT))
            if outcome not in expected:
                key = f"{kind['name']}: {outcome}"
                unexpected[key] = unexpected.get(key, 0) + 1
            if kind["valid"] and outcome in expected:
                if at < minute:
                    first[kind["label"]].append(latency)
                elif at >= seconds - minute:
                    last[kind["label"]].append(latency)
    latency = {}
    for protocol in PROTOCOLS:
        p50_first, p99_first = percentiles(first[protocol])
        p50_last, p99_last = percentiles(last[protocol])
        latency[protocol] = {"first_p50_ms": p50_first, "first_p99_ms": p99_first,
                             "last_p50_ms": p50_last, "last_p99_ms": p99_last,
                             "p99_ratio": p99_last / p99_first,
                             "first_count": len(first[protocol]),
                             "last_count": len(last[protocol])}
    warm = [mb for at, mb in rss if at <= minute]
    after_warmup = warm[-1] if warm else rss[0][1]
    return {"requests": total, "answered": answers, "lost": lost, "server_errors": server_errors,
            "unexpected": unexpected, "requests_per_second": total / seconds,
            "malformed_share": sum(k["weight"] for k in kinds if not k["valid"]),
            "latency": latency, "window_seconds": minute,
            "rss_mb": {"start": rss[0][1], "after_warmup": after_warmup, "end": rss[-1][1],
                       "max": max(mb for _, mb in rss),
                       "growth_after_warmup": rss[-1][1] / after_warmup - 1},
            "reloads": len(reloads)}


def run_soak(cli: str, load: str, models: str, minutes: float, reload_secs: float,
             folder: str, clients: int = 32, server_args=(), env=None,
             reloaded=tuple(MODELS)) -> dict:
    """Runs the soak; the figures, with the RSS samples and reload times."""
    sources = {name: os.path.join(models, file) for name, file in MODELS.items()}
    repository = make_repository(os.path.join(folder, "repository"), {
        name: (path, BATCHING) for name, path in sources.items() if path.endswith(".pt")})
    # make_repository names every file model.pt: the package goes in under its own name.
    os.makedirs(os.path.join(repository, "fashion_pt2", "1"), exist_ok=True)
    with open(os.path.join(repository, "fashion_pt2", "config.json"), "w") as f:
        json.dump(BATCHING, f)
    shutil.copy(sources["fashion_pt2"], os.path.join(repository, "fashion_pt2", "1", "model.pt2"))
    kinds = write_kinds(folder, fashion_images(models, 0, 1))
    mix = os.path.join(folder, "mix.json")
    with open(mix, "w") as f:
        json.dump(kinds, f)
    trace = os.path.join(folder, "trace.csv")
    server = Server(cli, repository, "--grpc-port", "0", "--model-control-mode", "poll",
                    "--repository-poll-secs", "2", *server_args, env=env)
    seconds = minutes * 60
    try:
        sampler = Sampler(server)
        reloader = Reloader(server, repository, {name: sources[name] for name in reloaded},
                            reload_secs, until=seconds - 15)
        driver = subprocess.run(
            [load, "--mix", mix, "--port", str(server.port), "--grpc-port",
             str(server.grpc_port), "--clients", str(clients), "--seconds", str(seconds),
             "--trace", trace], capture_output=True, text=True)
        reloader.stop()
        sampler.stop()
        if driver.returncode != 0:
            raise RuntimeError(f"torchship-load failed: {driver.stderr.strip()}")
    finally:
        exit_code = server.terminate()
    result = analyse(trace, kinds, seconds, sampler.samples, reloader.times)
    result.update({"minutes": minutes, "clients": clients, "reload_seconds": reload_secs,
                   "reload_failures": reloader.failures, "exit_code": exit_code,
                   "rss_samples": [[round(at, 1), round(mb, 1)] for at, mb in sampler.samples],
                   "reload_times": [round(at, 1) for at in reloader.times],
                   "kinds": [{"name": k["name"], "weight": k["weight"], "valid": k["valid"]}
                             for k in kinds],
                   "server_log_errors": [line for line in server.log if ": error: " in line]})
    return result


def summary(result: dict) -> str:
    lines = [f"{result['minutes']:g} min, {result['clients']} clients: {result['requests']:,} "
             f"requests ({result['requests_per_second']:.0f}/s), {result['lost']} lost, "
             f"{result['server_errors']} 5xx, {sum(result['unexpected'].values())} unexpected "
             f"answers, {result['reloads']} reloads"]
    for protocol, figures in result["latency"].items():
        lines.append(f"  {protocol:11s} p50 {figures['first_p50_ms']:.2f} -> "
                     f"{figures['last_p50_ms']:.2f} ms, p99 {figures['first_p99_ms']:.2f} -> "
                     f"{figures['last_p99_ms']:.2f} ms (x{figures['p99_ratio']:.2f})")
    rss = result["rss_mb"]
    lines.append(f"  RSS {rss['start']:.0f} MB at start, {rss['after_warmup']:.0f} MB after "
                 f"warm-up, {rss['end']:.0f} MB at the end "
                 f"({100 * rss['growth_after_warmup']:+.1f}%), max {rss['max']:.0f} MB")
    return "\n".join(lines)


def write_svg(result: dict, path: str) -> None:
    """RSS over time as a line, reloads as ticks: a plain SVG, no plotting library needed."""
    samples = result["rss_samples"]
    width, height, left, bottom, top, right = 720, 300, 60, 40, 20, 20
    end = max(at for at, _ in samples) / 60
    low = min(mb for _, mb in samples)
    high = max(mb for _, mb in samples)
    low, high = np.floor(low * 0.95 / 10) * 10, np.ceil(high * 1.05 / 10) * 10

    def x(minutes):
        return left + (width - left - right) * minutes / end

    def y(mb):
        return height - bottom - (height - bottom - top) * (mb - low) / (high - low)
    points = " ".join(f"{x(at / 60):.1f},{y(mb):.1f}" for at, mb in samples)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    for at in result["reload_times"]:
        parts.append(f'<line x1="{x(at / 60):.1f}" y1="{top}" x2="{x(at / 60):.1f}" '
                     f'y2="{height - bottom}" stroke="#ccc"/>')
    for step in np.linspace(low, high, 5):
        parts.append(f'<text x="{left - 6}" y="{y(step) + 4:.1f}" text-anchor="end">'
                     f'{step:.0f}</text>')
    ticks = max(1, int(end // 6) or 1)
    for minute in range(0, int(end) + 1, ticks):
        parts.append(f'<text x="{x(minute):.1f}" y="{height - bottom + 16}" '
                     f'text-anchor="middle">{minute}</text>')
    parts += [f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>',
              f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" '
              f'y2="{height - bottom}" stroke="black"/>',
              f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
              f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">'
              f'minutes (grey lines: a model reloaded)</text>',
              f'<text x="14" y="{(top + height - bottom) / 2}" text-anchor="middle" '
              f'transform="rotate(-90 14 {(top + height - bottom) / 2})">server RSS, MB</text>',
              "</svg>"]
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--reload-secs", type=float, default=60)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--doc", action="store_true",
                        help="write docs/soak-rss.svg")
    args = parser.parse_args(argv)
    cli = os.path.join(BUILD, "bin", "torchship")
    load = os.path.join(BUILD, "bin", "torchship-load")
    for path in (cli, load):
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: build first (scripts/build.sh)")
    with tempfile.TemporaryDirectory() as folder:
        result = run_soak(cli, load, os.path.join(BUILD, "models"), args.minutes,
                          args.reload_secs, folder, args.clients)
    result["machine"] = f"{cpu_model()}, {os.cpu_count()} CPUs"
    result["date"] = datetime.date.today().isoformat()
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(result, f, indent=1)
    print(summary(result))
    if args.doc:
        write_svg(result, SVG)
        print(f"wrote {SVG}")


if __name__ == "__main__":
    main()
