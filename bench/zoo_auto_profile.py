"""Where the time goes in each cell the archive of every form misses (bench/results/zoo-auto.json):
the engine it chose against the peer it missed, by kind of work, from each runtime's own
per-node timing.

    PYTHONPATH=python python -m bench zoo_auto_profile [--runs 20] [--cells resnet50:1,...]

- OpenVINO (torchship's form, and the OpenVINO peers): the CPU plugin's profiling (PERF_COUNT),
  torchship's form compiled from the auto archive's IR as the C++ backend compiles it (one
  stream, 2 threads, unpinned, free sizes; a static copy for a batch the manifest lists in
  export.static_batches), the peers as bench/runners.py compiles them (the ONNX file reshaped to
  the input's shape, LATENCY hint).
- ONNX Runtime: its session profiling (per-node kernel time).
- AOTInductor: oneDNN's primitives (ONEDNN_VERBOSE, bench/zoo_profile.py); the rest of the
  forward is "outside oneDNN" (inductor's kernels and the glue).

Each runtime's node kinds are put in the same bins (convolution, matmul, elementwise,
normalization, pooling, layout, other); a node that fuses several ops counts in the bin of the
op it is named for. Per forward: the sum over `runs` profiled forwards after a warm-up, divided
by `runs`. Writes bench/results/zoo-auto-profile.json, which bench/zoo_report.py renders.
Run with the PyPI stack's interpreter (scripts/env.sh's $PY).
"""

import argparse
import importlib
import io
import json
import os
import tempfile
import zipfile
from typing import Dict, List, Optional, Tuple

import numpy as np

from bench import zoo, zoo_profile, zoo_report

PROFILE_FILE = os.path.join(zoo_report.RESULTS, "zoo-auto-profile.json")
THREADS = 2
BINS = {
    "convolution": ("conv", "deconvolution"),
    "matmul": ("matmul", "fullyconnected", "gemm", "inner_product", "attention", "sdpa",
               "scaleddotproduct"),
    "normalization": ("norm", "mvn"),
    "pooling": ("pool", "reduce"),
    "layout": ("reorder", "transpose", "reshape", "concat", "split", "slice", "gather",
               "squeeze", "flatten", "interpolate", "resize", "shapeof", "broadcast", "pad",
               "expand", "tile", "roll", "shuffle"),
    "elementwise": ("eltwise", "subgraph", "add", "mul", "sub", "div", "relu", "sigmoid",
                    "swish", "gelu", "erf", "clip", "pow", "sqrt", "tanh", "math", "where"),
}


def bin_of(kind: str) -> str:
    lowered = kind.lower()
    for name, needles in BINS.items():
        if any(needle in lowered for needle in needles):
            return name
    return "other"


def add_to(totals: Dict[str, float], kind: str, ms: float) -> None:
    name = bin_of(kind)
    totals[name] = totals.get(name, 0.0) + ms


def per_forward(totals: Dict[str, float], runs: int) -> Dict[str, float]:
    return {k: round(v / runs, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def openvino_profile(model, x: np.ndarray, config: dict, runs: int) -> Dict[str, float]:
    import openvino as ov
    compiled = ov.Core().compile_model(model, "CPU", {**config, "PERF_COUNT": True})
    request = compiled.create_infer_request()
    request.infer([x])  # the first inference of a free-size model plans for the shape
    totals: Dict[str, float] = {}
    for _ in range(runs):
        request.infer([x])
        for node in request.profiling_info:
            if node.status == node.Status.EXECUTED:
                add_to(totals, node.node_type, node.real_time.total_seconds() * 1000)
    return per_forward(totals, runs)


def form_ir(archive: str) -> Tuple[object, dict]:
    """The auto archive's OpenVINO form: its IR read from memory, and its manifest."""
    import openvino as ov
    from torchship.openvino.ir_archive import read_ir_archive
    with zipfile.ZipFile(archive) as outer:
        name = next(n for n in outer.namelist() if n.endswith("forms/openvino.ov"))
        records = read_ir_archive(io.BytesIO(outer.read(name)))
    weights = np.frombuffer(records["openvino/model.bin"], dtype=np.uint8).copy()
    return ov.Core().read_model(records["openvino/model.xml"].decode(), ov.Tensor(weights)), \
        json.loads(records["extra/torchship.json"])


def torchship_openvino(case: dict, x: np.ndarray, precision: str, runs: int) -> Dict[str, float]:
    import openvino as ov
    model, manifest = form_ir(case["files"]["exported_auto"])
    static = manifest["export"].get("static_batches", [])
    if any(fixed["batch"] == x.shape[0] for fixed in static):
        shape = ov.PartialShape(model.inputs[0].get_partial_shape())
        shape[0] = ov.Dimension(x.shape[0])
        model.reshape({model.inputs[0]: shape})
    return openvino_profile(model, x, {
        "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision],
        "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": THREADS, "ENABLE_CPU_PINNING": False}, runs)


def openvino_peer(case: dict, x: np.ndarray, fp32: bool, runs: int) -> Dict[str, float]:
    import openvino as ov
    model = ov.Core().read_model(case["files"]["onnx"])
    model.reshape({model.inputs[0]: ov.PartialShape(list(x.shape))})
    config = {"INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY"}
    if fp32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return openvino_profile(model, x, config, runs)


def onnxruntime_peer(case: dict, x: np.ndarray, runs: int) -> Dict[str, float]:
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(case["files"]["onnx"], options,
                                       providers=["CPUExecutionProvider"])
        session.run(None, {"input": x})
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "ort")
        session = ort.InferenceSession(case["files"]["onnx"], options,
                                       providers=["CPUExecutionProvider"])
        session.run(None, {"input": x})
        with open(session.end_profiling()) as f:
            warm_up = len(json.load(f))
        session = ort.InferenceSession(case["files"]["onnx"], options,
                                       providers=["CPUExecutionProvider"])
        session.run(None, {"input": x})  # the warm-up, left out below
        for _ in range(runs):
            session.run(None, {"input": x})
        with open(session.end_profiling()) as f:
            events = json.load(f)[warm_up:]
    totals: Dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            add_to(totals, event["args"]["op_name"], event["dur"] / 1000)
    return per_forward(totals, runs)


def aoti(case: dict, batch: str, runs: int, latency_ms: float) -> Dict[str, float]:
    cli = zoo.stack_paths()["cli"]
    path, npy = case["files"]["exported_pt2"], case["inputs"][batch]
    short = zoo_profile.primitive_ms(cli, path, npy, runs)
    long = zoo_profile.primitive_ms(cli, path, npy, 2 * runs)
    totals: Dict[str, float] = {}
    for kind in set(short) | set(long):
        add_to(totals, kind, (long.get(kind, 0.0) - short.get(kind, 0.0)))
    found = per_forward(totals, runs)
    found["outside oneDNN"] = round(max(latency_ms - sum(found.values()), 0.0), 3)
    return found


def engine_profile(case: dict, batch: str, engine: str, runs: int,
                   latency_ms: float) -> Dict[str, float]:
    x = np.load(case["inputs"][batch])
    name, _, precision = engine.partition(" ")
    if name == "openvino":
        return torchship_openvino(case, x, precision or "fp32", runs)
    if name == "aoti":
        return aoti(case, batch, runs, latency_ms)
    raise ValueError(f"no profile for the engine {engine!r}")


def peer_profile(case: dict, batch: str, peer: str, runs: int) -> Dict[str, float]:
    x = np.load(case["inputs"][batch])
    if peer == "ONNX Runtime":
        return onnxruntime_peer(case, x, runs)
    return openvino_peer(case, x, fp32=peer == "OpenVINO fp32", runs=runs)


def missed_cells(results: dict) -> List[dict]:
    """Each cell over its goal: the fp32 auto run against the fastest fp32 peer, the precision
    auto run against OpenVINO's default."""
    goals = ((zoo_report.AUTO, zoo_report.PEERS), (zoo_report.AUTO_BF16, (zoo_report.BF16_PEER,)))
    missed = []
    for model, batches in zoo_report.cells(results).items():
        for batch, row in batches.items():
            samples = results["results"][model][batch]["samples"]
            for runner, peers in goals:
                ours = row.get(runner)
                measured = {p: row[p] for p in peers if row.get(p)}
                if ours is None or not measured:
                    continue
                peer = min(measured, key=measured.get)
                if ours > measured[peer]:
                    missed.append({"model": model, "batch": batch, "runner": runner,
                                   "engine": zoo_report.chosen_engine(samples[runner]),
                                   "ms": ours, "peer": peer, "peer_ms": measured[peer]})
    return missed


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cells", default="", help="model:batch,... (default: every missed)")
    args = parser.parse_args(argv)
    # torchship (python/ on PYTHONPATH) reads the archives' OpenVINO form: fail now, not minutes in.
    importlib.import_module("torchship.openvino.ir_archive")
    with open(zoo_report.AUTO_FILE) as f:
        results = json.load(f)
    cases = {case["id"]: case for case in results["cases"]}
    wanted = set(args.cells.split(",")) if args.cells else None
    found = []
    for cell in missed_cells(results):
        if wanted and f"{cell['model']}:{cell['batch']}" not in wanted:
            continue
        case = cases[cell["model"]]
        cell["engine_ms"] = engine_profile(case, cell["batch"], cell["engine"], args.runs,
                                           cell["ms"])
        cell["peer_profile_ms"] = peer_profile(case, cell["batch"], cell["peer"], args.runs)
        found.append(cell)
        print(json.dumps(cell), flush=True)
    command = f"python -m bench zoo_auto_profile --runs {args.runs}" + (
        f" --cells {args.cells}" if args.cells else "")
    zoo_report.publish(PROFILE_FILE, {"runs": args.runs, "threads": THREADS,
                                      "cpu": results["cpu"], "command": command, "cells": found})


if __name__ == "__main__":
    main()
