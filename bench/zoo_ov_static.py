"""Would a static-shape OpenVINO form be faster? Each zoo model's OpenVINO archive, as
torchship.export wrote it (free batch and image sizes), compiled by OpenVINO's CPU plugin as the
C++ backend compiles it, against the same IR reshaped to the request's exact shape (what a
static form, or a static model beside the dynamic one, would run), batch 1 and 8, fp32.

    python -m bench zoo_ov_static [--models resnet50,...] [--rounds 5] [--runs 10]

Both compiles take the backend's properties (fp32, one stream, the CPUs' threads, no pinning);
runs alternate between the two in one process, and the best round's median is kept. The
archives come from the zoo's folder (build/bench/zoo/<model>/exported.ov; bench/zoo.py --forms
exports them). Results: bench/results/zoo-ov-static.json, rendered into the "Benchmark zoo"
section by bench/zoo_report.py. Run with the PyPI stack's interpreter (scripts/env.sh's $PY).
"""

import argparse
import datetime
import json
import os
import statistics
import time
import zipfile
from typing import Dict, List, Optional

import numpy as np

from bench import runners, zoo, zoo_report

GRAPH, WEIGHTS = "openvino/model.xml", "openvino/model.bin"


def read_ir(core, path: str):
    """The archive's IR as the backend reads it: from the zip's bytes, no files."""
    import openvino as ov
    with zipfile.ZipFile(path) as archive:
        names = {name.split("/", 1)[1]: name for name in archive.namelist() if "/" in name}
        graph = archive.read(names[GRAPH]).decode()
        weights = np.frombuffer(archive.read(names[WEIGHTS]), dtype=np.uint8).copy()
    return core.read_model(graph, ov.Tensor(weights))


def compiled(core, model, threads: int):
    return core.compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": threads,
        "ENABLE_CPU_PINNING": False})


def median_ms(request, x: np.ndarray, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        request.infer([x])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(core, model, x: np.ndarray, threads: int, rounds: int,
            runs: int) -> Dict[str, float]:
    """`model` (the IR as read) and a copy of it reshaped to `x`'s shape, alternately timed."""
    import openvino as ov
    static = model.clone()
    static.reshape({static.inputs[0]: ov.PartialShape(list(x.shape))})
    requests = {kind: compiled(core, graph, threads).create_infer_request()
                for kind, graph in (("dynamic", model), ("static", static))}
    for request in requests.values():
        request.infer([x])  # the first inference of a dynamic model plans for the shape
    best = {kind: float("inf") for kind in requests}
    for _ in range(rounds):
        for kind, request in requests.items():
            best[kind] = min(best[kind], median_ms(request, x, runs))
    return best


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(zoo.MODELS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    paths = zoo.stack_paths()
    threads = len(os.sched_getaffinity(0))
    import openvino as ov
    core = ov.Core()
    started = time.time()
    found = {}
    for name in args.models.split(","):
        case_file = os.path.join(paths["work"], name, "case.json")
        if not os.path.exists(case_file):
            continue
        with open(case_file) as f:
            case = json.load(f)
        archive = case["files"].get("exported_ov")
        if not archive:
            continue
        found[name] = {"name": case["name"], "batches": {}}
        model = read_ir(core, archive)
        for batch, npy in case["inputs"].items():
            runners.progress(f"ov static: {name} batch {batch}")
            x = np.load(npy)
            if x.dtype != np.float32:
                continue  # token ids: the text encoder's length is its free size, not an image
            found[name]["batches"][batch] = measure(core, model, x, threads, args.rounds,
                                                   args.runs)
            zoo.log(f"ov static: {name} b{batch} {found[name]['batches'][batch]}")
    results = {"date": datetime.date.today().isoformat(), "cpu": runners.cpu_model(),
               "threads": threads, "rounds": args.rounds, "runs": args.runs,
               "versions": zoo.versions(paths), "elapsed_seconds": round(time.time() - started),
               "command": f"python -m bench zoo_ov_static --models {args.models} "
                          f"--rounds {args.rounds} --runs {args.runs}",
               "models": found}
    runners.clear_progress()
    zoo_report.publish(zoo_report.OV_STATIC_FILE, results)


if __name__ == "__main__":
    main()
