"""Two engines in one server: a TorchScript archive (libtorch's OpenMP threads) and an OpenVINO
archive (OpenVINO's TBB threads) served together by one `torchship serve`, against each served
alone, at 32 clients, in one run with interleaved rounds.

    bash bench/setup.sh && scripts/build.sh
    python -m bench serve_engines [--pt resnet50] [--ov mobilenet_v3_large] [--seconds 10]

Both models come from the zoo's exports (build/bench/zoo/<model>/exported.pt and exported.ov;
exported here when missing, as bench/zoo.py --reuse does). Alone, one server hosts one model and 32 clients ask it; together,
one server hosts both and 16 clients ask each, at once. Each model's share is its throughput
together over its throughput alone; the two shares add up to 1.0 where the engines divide the
CPUs without loss, and fall below where their thread pools fight over them (oversubscription).
Every request is one image over HTTP with binary tensors; the server batches dynamically
(max_batch_size 8), one instance per model on all the CPUs' threads, as `torchship serve`
configures a model by default. Results: bench/results/serve-engines.json, rendered into the
"Benchmark zoo" section by bench/zoo_report.py.

Run with the PyPI stack's interpreter (scripts/env.sh's $PY).
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
from harness.server_process import Server

MAX_BATCH = 8
QUEUE_DELAY_US = 5000
PROTOCOL = "http-binary"


def repository(folder: str, models: Dict[str, str]) -> str:
    """A model repository of `models` (served name: archive)."""
    shutil.rmtree(folder, ignore_errors=True)
    for name, archive in models.items():
        os.makedirs(os.path.join(folder, name, "1"))
        shutil.copy(archive, os.path.join(folder, name, "1",
                                          "model" + os.path.splitext(archive)[1]))
        with open(os.path.join(folder, name, "config.json"), "w") as f:
            json.dump({"max_batch_size": MAX_BATCH, "max_queue_delay_us": QUEUE_DELAY_US}, f)
    return folder


def serve(paths: Dict[str, str], folder: str, load: Dict[str, int], requests: Dict[str, list],
          seconds: float) -> Dict[str, dict]:
    """One server over `folder`; `load` clients on each named model, all asking at once."""
    generator = os.path.join(paths["build"], "bin", "torchship-load")
    server = Server(paths["cli"], folder)
    try:
        running = {name: subprocess.Popen(
            [generator, "--protocol", "http", "--port", str(server.port), "--model", name,
             "--clients", str(clients), "--seconds", str(seconds), "--warmup-seconds", "2",
             *requests[name]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, clients in load.items()}
        out = {}
        for name, process in running.items():
            stdout, stderr = process.communicate()
            if process.returncode != 0:
                raise SystemExit(f"torchship-load on {name} failed:\n{stderr}{stdout}")
            out[name] = json.loads(stdout)
        out["rss_mb"] = server.rss_kb() / 1024
    finally:
        assert server.terminate() == 0, "\n".join(server.log)
    return out


def one_round(paths, archives: Dict[str, str], requests, clients: int, seconds: float,
              tmp: str) -> dict:
    found = {}
    for name, archive in archives.items():
        folder = repository(os.path.join(tmp, "alone"), {name: archive})
        found[f"{name} alone"] = serve(paths, folder, {name: clients}, requests, seconds)
        zoo.log(f"serve engines: {name} alone {found[f'{name} alone'][name]['rps']:.1f}/s")
    folder = repository(os.path.join(tmp, "together"), archives)
    split = {name: clients // len(archives) for name in archives}
    found["together"] = serve(paths, folder, split, requests, seconds)
    zoo.log("serve engines: together " + ", ".join(
        f"{name} {found['together'][name]['rps']:.1f}/s" for name in archives))
    return found


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pt", default="resnet50", help="the zoo model served as TorchScript")
    parser.add_argument("--ov", default="mobilenet_v3_large",
                        help="the zoo model served as OpenVINO")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args(argv)
    paths = zoo.stack_paths()
    os.makedirs(paths["work"], exist_ok=True)
    started = time.time()
    pt_case, ov_case = zoo.make_cases(paths, [args.pt, args.ov], plain_packages=False, reuse=True)
    cases = {f"{args.pt}-pt": (pt_case, "exported_pt"), f"{args.ov}-ov": (ov_case, "exported_ov")}
    archives = {name: case["files"][key] for name, (case, key) in cases.items()}
    rounds: List[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        requests = {name: protocols.write_requests(tmp, name, "x", np.load(
            case["inputs"]["1"]))[PROTOCOL] for name, (case, _) in cases.items()}
        for _ in range(args.rounds):
            rounds.append(one_round(paths, archives, requests, args.clients, args.seconds, tmp))
    results = {
        "date": datetime.date.today().isoformat(), "cpu": runners.cpu_model(),
        "cpus": len(os.sched_getaffinity(0)), "versions": zoo.versions(paths),
        "clients": args.clients, "seconds": args.seconds, "rounds": args.rounds,
        "max_batch_size": MAX_BATCH, "max_queue_delay_us": QUEUE_DELAY_US,
        "elapsed_seconds": round(time.time() - started),
        "command": f"python -m bench serve_engines --pt {args.pt} --ov {args.ov} "
                   f"--seconds {args.seconds:g} --rounds {args.rounds}",
        "models": {name: case["name"] for name, (case, _) in cases.items()}, "samples": rounds}
    os.makedirs(zoo_report.RESULTS, exist_ok=True)
    with open(zoo_report.ENGINES_FILE, "w") as f:
        json.dump(results, f, indent=1)
    runners.clear_progress()
    zoo_report.write_section()


if __name__ == "__main__":
    main()
