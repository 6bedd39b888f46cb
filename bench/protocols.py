"""KServe v2 over gRPC against HTTP with binary tensors and HTTP JSON, in one run on one
`torchship serve`: Fashion-MNIST (one 28x28 image per request, dynamic batching) and ResNet34
(one 224x224 photo per request) at 1, 8 and 32 concurrent clients. The clients are
build/bin/torchship-load (bench/load_generator.cpp: C++, one connection per client, the next
request when the last is answered). The server runs on the first half of the CPUs and the
clients on the other half, as if they were on other machines: otherwise the client libraries'
own CPU time (gRPC's is larger than httplib's) would be charged to the server. Rounds are interleaved (every protocol once per round); the table takes each cell's median
round. Writes bench/results/protocols.json and the "KServe v2 protocols under load" section of
docs/benchmarks.md.

    python -m bench protocols [--seconds 8] [--rounds 3]
    python -m bench protocols --render     # the section again from the results file

Run with the PyPI stack's interpreter (scripts/env.sh's $PY): it builds the gRPC request with
tritonclient's protobuf classes.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import List, Optional

import numpy as np

from bench.report import replace_section
from bench.runners import cpu_model
from harness.kserve_client import DATATYPES, infer_body
from harness.server_process import Server, make_repository

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

BUILD = os.environ.get("TORCHSHIP_BUILD", os.path.join(ROOT, "build"))
CLI = os.path.join(BUILD, "bin", "torchship")
LOAD = os.path.join(BUILD, "bin", "torchship-load")
MODELS = os.path.join(BUILD, "models")
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
RESULTS = os.path.join(ROOT, "bench", "results", "protocols.json")
SECTION = "## KServe v2 protocols under load"
PROTOCOLS = ("grpc", "http-binary", "http-json")
PROTOCOL_NAMES = {"grpc": "gRPC (raw contents)", "http-binary": "HTTP, binary tensors",
                  "http-json": "HTTP, JSON"}
MODEL_NAMES = {"fashion": "Fashion-MNIST", "resnet": "ResNet34"}


def grpc_request(model: str, name: str, array: np.ndarray) -> bytes:
    from tritonclient.grpc import service_pb2
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype=DATATYPES[array.dtype], shape=list(array.shape))
    request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    return request.SerializeToString()


def write_requests(folder: str, model: str, name: str, array: np.ndarray) -> dict:
    """Per protocol: the load generator's arguments for one request with `array`."""
    out = {}
    path = os.path.join(folder, f"{model}.pb")
    with open(path, "wb") as f:
        f.write(grpc_request(model, name, array))
    out["grpc"] = ["--request", path]
    body, headers = infer_body({name: array}, binary_inputs=True, binary_outputs=True)
    path = os.path.join(folder, f"{model}.bin")
    with open(path, "wb") as f:
        f.write(body)
    out["http-binary"] = ["--request", path, "--header-length",
                          headers["Inference-Header-Content-Length"]]
    body, _ = infer_body({name: array})
    path = os.path.join(folder, f"{model}.json")
    with open(path, "wb") as f:
        f.write(body)
    out["http-json"] = ["--request", path]
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--render", action="store_true",
                        help="render the section from bench/results/protocols.json, measure "
                             "nothing")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--models", nargs="+", choices=list(MODEL_NAMES), default=list(MODEL_NAMES),
                        help="a quick look at one model (the page needs both)")
    args = parser.parse_args(argv)
    if args.render:
        with open(RESULTS) as f:
            render(json.load(f))
        return
    for path in (CLI, LOAD):
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: build first (scripts/build.sh)")

    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = set(cpus[:max(1, len(cpus) // 2)])
    client_cpus = set(cpus[len(cpus) // 2:]) if len(cpus) > 1 else set(cpus)
    rng = np.random.default_rng(0)
    samples = {}  # (model, clients, protocol) -> [round results]
    with tempfile.TemporaryDirectory() as tmp:
        repository = make_repository(os.path.join(tmp, "repository"), {
            "fashion": (os.path.join(MODELS, "fashion_mnist.pt"),
                        {"max_batch_size": 64, "max_queue_delay_us": 2000}),
            # One execution per server CPU, one thread each (as bench/serve_bench.py).
            "resnet": (os.path.join(MODELS, "classifier.pt"),
                       {"instances": len(server_cpus)})})
        requests = {
            "fashion": write_requests(tmp, "fashion", "images",
                                      rng.integers(0, 256, (1, 28, 28, 1), dtype=np.uint8)),
            "resnet": write_requests(tmp, "resnet", "image",
                                     rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)),
        }
        os.sched_setaffinity(0, server_cpus)  # the server inherits it
        server = Server(CLI, repository, "--grpc-port", "0", "--threads", "1")
        os.sched_setaffinity(0, set(cpus))
        total = len(args.models) * len(args.clients) * len(PROTOCOLS) * args.rounds
        done = 0
        try:
            for round_number in range(args.rounds):
                for model in args.models:
                    for clients in args.clients:
                        for protocol in PROTOCOLS:
                            port = server.grpc_port if protocol == "grpc" else server.port
                            command = [LOAD, "--protocol", protocol.split("-")[0], "--port",
                                       str(port), "--model", model, "--clients", str(clients),
                                       "--seconds", str(args.seconds), "--warmup-seconds", "1",
                                       *requests[model][protocol]]
                            run = subprocess.run(
                                command, capture_output=True, text=True,
                                preexec_fn=lambda: os.sched_setaffinity(0, client_cpus))
                            if run.returncode != 0:
                                raise SystemExit(f"{' '.join(command)} failed:\n{run.stderr}"
                                                 f"{run.stdout}")
                            result = json.loads(run.stdout)
                            samples.setdefault(f"{model}/{clients}/{protocol}", []).append(
                                result)
                            done += 1
                            if sys.stderr.isatty():
                                print(f"\r{done}/{total} {model} {clients} clients {protocol}: "
                                      f"{result['rps']:.0f}/s   ", end="", file=sys.stderr,
                                      flush=True)
        finally:
            assert server.terminate() == 0
    if sys.stderr.isatty():
        print(file=sys.stderr)

    version = subprocess.run([CLI, "--version"], capture_output=True, text=True).stdout.strip()
    results = {"date": datetime.date.today().isoformat(), "cpu": cpu_model(),
               "cpus": os.cpu_count(), "server_cpus": sorted(server_cpus),
               "client_cpus": sorted(client_cpus), "torchship": version, "seconds": args.seconds,
               "rounds": args.rounds, "samples": samples}
    if args.models != list(MODEL_NAMES):
        for key, runs in samples.items():  # not the page's data: printed only
            print(key, [(round(r["rps"], 1), round(r["p99_ms"], 2)) for r in runs])
        return
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=1)
    render(results)


def median_round(runs: list) -> dict:
    """The round with the median throughput, its latencies with it."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    return ordered[len(ordered) // 2]


def render(results: dict) -> None:
    samples = results["samples"]
    clients_list = sorted({int(key.split("/")[1]) for key in samples})
    lines = [
        SECTION, "",
        f"`bench/protocols.py` ({results['date']}, {results['cpu']}, {results['cpus']} CPUs; "
        f"{results['torchship']}): one `torchship serve --grpc-port 0 --threads 1` on CPU "
        f"{', '.join(map(str, results['server_cpus']))}, the clients on CPU "
        f"{', '.join(map(str, results['client_cpus']))} (as if on other machines, so that the "
        "client libraries' own CPU time, in the last column, is not charged to the server), "
        f"{results['rounds']} interleaved rounds of {results['seconds']:g} s per cell after 1 s "
        "of warm-up, the median round shown. Clients are `torchship-load` "
        "(bench/load_generator.cpp, C++): one connection each, the next request as soon as the "
        "last is answered. Fashion-MNIST: one 28x28 image per request, batched by the server "
        "(max_batch_size 64, 2 ms); ResNet34: one 224x224 photo per request (the archive's "
        "preprocessing in the model), one instance of 1 thread per server CPU. Outputs come back as raw contents (gRPC), binary data (HTTP binary) or JSON.",
        "",
        "| model | clients | protocol | requests/s | p50 ms | p99 ms | throughput / HTTP binary "
        "| p99 / HTTP binary | client CPU us / call |",
        "|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for model, model_name in MODEL_NAMES.items():
        for clients in clients_list:
            binary = median_round(samples[f"{model}/{clients}/http-binary"])
            for protocol in PROTOCOLS:
                r = median_round(samples[f"{model}/{clients}/{protocol}"])
                failures = sum(r["failures"].values())
                lines.append(
                    f"| {model_name} | {clients} | {PROTOCOL_NAMES[protocol]} | {r['rps']:.0f} | "
                    f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps'] / binary['rps']:.2f}x | "
                    f"{r['p99_ms'] / binary['p99_ms']:.2f}x | {r['client_cpu_us_per_call']:.0f} |"
                    + (f" ({failures} failed)" if failures else ""))
                if protocol == "grpc" and clients == max(clients_list):
                    rounds = [run["rps"] for run in samples[f"{model}/{clients}/http-binary"]]
                    spread = (max(rounds) - min(rounds)) / statistics.median(rounds)
                    verdicts.append((model_name, clients, r["rps"] / binary["rps"],
                                     r["p99_ms"] / binary["p99_ms"], spread))
    lines += ["", "| goal (issue 14) | value | target | verdict |", "|---|---|---|---|"]
    for model_name, clients, throughput, p99, _ in verdicts:
        lines.append(f"| {model_name}, {clients} clients: gRPC throughput / HTTP binary | "
                     f"{throughput:.3f}x | >= 1 | {'met' if throughput >= 1 else '**not met**'} |")
        lines.append(f"| {model_name}, {clients} clients: gRPC p99 / HTTP binary | {p99:.3f}x | "
                     f"<= 1 | {'met' if p99 <= 1 else '**not met**'} |")
    lines.append("")
    for model_name, clients, throughput, p99, spread in verdicts:
        lines.append(f"{model_name} at {clients} clients: gRPC's throughput differs from HTTP "
                     f"binary's by {abs(throughput - 1):.1%} and its p99 by {abs(p99 - 1):.1%}; "
                     f"HTTP binary's own throughput varied by {spread:.1%} between rounds.")
    one = median_round(samples[f"resnet/{clients_list[0]}/http-binary"])
    lines += ["", f"The ResNet34 server is bound by its forward on one CPU ({one['p50_ms']:.0f} "
              f"ms a photo at {clients_list[0]} client{'s' if clients_list[0] > 1 else ''}): "
              "every protocol delivers what that CPU computes, and what a protocol costs "
              "shows in the Fashion-MNIST rows, where a request's forward share is small.", ""]
    replace_section(DOC, SECTION, lines)


if __name__ == "__main__":
    main()
