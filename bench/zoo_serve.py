"""Serving keeps the zoo's gains: requests per second under `torchship serve` at 32 clients,
one image per request over HTTP (binary tensors) and gRPC, against the best throughput
`torchship bench` reaches in process on the same package (batch 1 or 8), for two zoo models,
in one run with interleaved rounds.

    bash bench/setup.sh && scripts/build.sh
    python -m bench zoo_serve [--models resnet50,mobilenet_v3_large] [--seconds 10] [--rounds 2]

The package is the recommended path, torchship.export's .pt2 with a dynamic batch dimension
(bench/zoo_models.py --package-only; a zoo run's is reused). The server batches requests
dynamically (max_batch_size 8, so that a forward is the in-process batch of 8) in two
configurations: one instance on all the CPUs' threads, and one instance per CPU with one thread
each. Clients are build/bin/torchship-load (C++, one connection each, the next request when the
last is answered); they share the CPUs with the server, as the in-process run has them alone,
so the ratio charges the clients' CPU time to serving. Results: bench/results/zoo-serve.json,
rendered into the "Benchmark zoo" section by bench/zoo_report.py.

Run with the PyPI stack's interpreter (scripts/env.sh's $PY): it builds the gRPC request with
tritonclient's protobuf classes.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

from bench import protocols, runners, zoo, zoo_report
from bench.child_processes import child_env, module_command
from harness.server_process import Server

MODELS = ["resnet50", "mobilenet_v3_large"]
PROTOCOLS = ("http-binary", "grpc")
MAX_BATCH = 8
QUEUE_DELAY_US = 5000


def configurations(cpus: int) -> Dict[str, dict]:
    """Server configurations: config.json and the serve flags."""
    return {"1 instance x all threads": {"config": {"instances": 1}, "flags": []},
            f"{cpus} instances x 1 thread": {"config": {"instances": cpus},
                                            "flags": ["--threads", "1"]}}


def repository(folder: str, cases: Dict[str, dict], config: dict) -> str:
    for name, case in cases.items():
        os.makedirs(os.path.join(folder, name, "1"), exist_ok=True)
        shutil.copy(case["package"], os.path.join(folder, name, "1", "model.pt2"))
        with open(os.path.join(folder, name, "config.json"), "w") as f:
            json.dump({"max_batch_size": MAX_BATCH, "max_queue_delay_us": QUEUE_DELAY_US,
                       **config}, f)
    return folder


def in_process(case: dict, paths: Dict[str, str], runs: int) -> Dict[str, float]:
    """Images per second of `torchship bench` at each batch size."""
    out = {}
    for batch, npy in case["inputs"].items():
        data = json.loads(runners.run_child(
            runners.command(paths["cli"], case["package"], npy, runs))["stdout"])
        out[batch] = int(batch) * 1000 / data["latency_ms"]["p50"]
    return out


def serve_round(cases: Dict[str, dict], paths: Dict[str, str], configuration: dict, tmp: str,
                requests: Dict[str, dict], clients: int, seconds: float) -> Dict[str, dict]:
    load = os.path.join(paths["build"], "bin", "torchship-load")
    folder = repository(os.path.join(tmp, "repository"), cases, configuration["config"])
    server = Server(paths["cli"], folder, "--grpc-port", "0", *configuration["flags"])
    out = {}
    try:
        for name in cases:
            for protocol in PROTOCOLS:
                port = server.grpc_port if protocol == "grpc" else server.port
                command = [load, "--protocol", protocol.split("-")[0], "--port", str(port),
                           "--model", name, "--clients", str(clients), "--seconds",
                           str(seconds), "--warmup-seconds", "2", *requests[name][protocol]]
                run = subprocess.run(command, capture_output=True, text=True)
                if run.returncode != 0:
                    raise SystemExit(f"{' '.join(command)} failed:\n{run.stderr}{run.stdout}")
                out[f"{name}/{protocol}"] = json.loads(run.stdout)
                zoo.log(f"serve: {name} {protocol}: {out[f'{name}/{protocol}']['rps']:.1f}/s")
        out["rss_mb"] = server.rss_kb() / 1024
    finally:
        assert server.terminate() == 0
    shutil.rmtree(folder)
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args(argv)
    paths = zoo.stack_paths()
    os.makedirs(paths["work"], exist_ok=True)
    cpus = len(os.sched_getaffinity(0))
    started = time.time()
    cases = {}
    for name in args.models.split(","):
        runners.progress(f"zoo serve: exporting {name}")
        run = subprocess.run(module_command(paths["python"], "zoo_models", paths["work"], name,
                                            "--package-only"), check=True, env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        cases[name] = json.loads(run.stdout.strip().splitlines()[-1])
    exported = time.time()
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        requests = {}
        for name, case in cases.items():
            image = np.load(case["inputs"]["1"])
            requests[name] = protocols.write_requests(tmp, name, "x", image)
        for number in range(args.rounds):
            found = {"in_process": {name: in_process(case, paths, args.runs)
                                    for name, case in cases.items()}, "served": {}}
            for label, configuration in configurations(cpus).items():
                found["served"][label] = serve_round(cases, paths, configuration, tmp, requests,
                                                     args.clients, args.seconds)
            rounds.append(found)
    results = {
        "date": datetime.date.today().isoformat(), "cpu": runners.cpu_model(), "cpus": cpus,
        "versions": zoo.versions(paths), "clients": args.clients, "seconds": args.seconds,
        "rounds": args.rounds, "runs": args.runs, "max_batch_size": MAX_BATCH,
        "max_queue_delay_us": QUEUE_DELAY_US, "export_seconds": exported - started,
        "elapsed_seconds": time.time() - started,
        "command": f"python -m bench zoo_serve --models {args.models} --seconds {args.seconds:g} "
                   f"--rounds {args.rounds}",
        "models": {name: case["name"] for name, case in cases.items()}, "samples": rounds}
    runners.clear_progress()
    zoo_report.publish(zoo_report.SERVE_FILE, results)


if __name__ == "__main__":
    main()
