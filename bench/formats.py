"""TorchScript vs AOTInductor vs Python eager vs ONNX Runtime on one network, side by side in one
run: fp32 ResNet34 (random weights, fixed seed), batch 1, every runner in a fresh process of its
own per round, rounds interleaved. Per runner: steady latency (p50), the first inference after
load, load time and the process's peak RSS. Results go to bench/results/formats.json (committed)
and the report rendered from them to docs/benchmarks-formats.md (versions, machine and
conclusions all come from the measured data); the exported models to build/bench.

    ~/.cache/torchship/venv-*/bin/python -m bench formats [--rounds 3] [--runs 30] [--threads 2]
    ... -m bench formats --render        # the report again from bench/results/formats.json

Needs build/bin/torchship (a build against PyTorch 2.x), this interpreter's torch >= 2.6 with
torchvision, and onnxruntime + onnx from PyPI (scripts/requirements-bench.txt).
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

from bench.child_processes import child_env, module_command
from bench.report import RESULTS as RESULTS_FOLDER
from bench.report import summarize
from bench.runners import cpu_model, progress, run_child, timed

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CLI = os.path.join(ROOT, "build", "bin", "torchship")
WORK = os.path.join(ROOT, "build", "bench")
RESULTS = os.path.join(RESULTS_FOLDER, "formats.json")
REPORT = os.path.join(ROOT, "docs", "benchmarks-formats.md")
SHAPE = (1, 3, 224, 224)

RUNNERS = ["Python eager", "ONNX Runtime", "torchship TorchScript", "torchship AOTInductor"]
GOALS = {"aoti_vs_ort": 0.9, "first_over_steady": 1.5}


# ---- the artifacts, made once per run from the same weights --------------------------------

def prepare(threads: int) -> Dict[str, str]:
    import numpy as np
    import torch
    import torchvision
    import torchship  # python/, on the PYTHONPATH child_env() gives

    os.makedirs(WORK, exist_ok=True)
    paths = {name: os.path.join(WORK, f"resnet34{ext}") for name, ext in
             (("weights", ".pth"), ("pt", ".pt"), ("pt2", ".pt2"), ("onnx", ".onnx"),
              ("input", "_input.npy"))}
    torch.manual_seed(0)
    model = torchvision.models.resnet34().eval()
    torch.save(model.state_dict(), paths["weights"])
    x = torch.rand(SHAPE, generator=torch.Generator().manual_seed(1))
    np.save(paths["input"], x.numpy())
    manifest = torchship.Manifest(name="resnet34", inputs=[
        torchship.tensor_spec("x", "FP32", list(SHAPE))],
        outputs=[torchship.tensor_spec("logits", "FP32", [1, 1000], kind="logits")])
    progress("exporting TorchScript")
    torchship.export(model, (x,), paths["pt"], manifest=manifest)
    progress("compiling with AOTInductor")
    torchship.export(model, (x,), paths["pt2"], manifest=manifest, format="aoti")
    progress("exporting ONNX")
    with torch.no_grad():
        torch.onnx.export(model, (x,), paths["onnx"], input_names=["x"], output_names=["logits"],
                          opset_version=17, dynamo=False)
    return paths


# ---- runners: each one process, printing one JSON object ------------------------------------

def worker(name: str, paths: Dict[str, str], runs: int, threads: int) -> Dict[str, float]:
    import numpy as np
    x = np.load(paths["input"])
    started = time.perf_counter()
    if name == "Python eager":
        import torch
        import torchvision
        torch.set_num_threads(threads)
        model = torchvision.models.resnet34().eval()
        model.load_state_dict(torch.load(paths["weights"]))
        tensor = torch.from_numpy(x)
        load_ms = (time.perf_counter() - started) * 1000

        def call():
            with torch.inference_mode():
                model(tensor)
    else:  # ONNX Runtime
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(paths["onnx"], options,
                                               providers=["CPUExecutionProvider"])
        load_ms = (time.perf_counter() - started) * 1000

        def call():
            session.run(None, {"x": x})
    result = timed(call, runs)
    result["load_ms"] = load_ms
    return result


def run_once(name: str, paths: Dict[str, str], runs: int, threads: int) -> Dict[str, float]:
    if name.startswith("torchship"):
        archive = paths["pt2" if "AOTInductor" in name else "pt"]
        command = [CLI, "bench", archive, "--input", paths["input"], "--runs", str(runs),
                   "--threads", str(threads), "--json"]
    else:
        command = module_command(sys.executable, "formats", "--worker", name, "--runs",
                                 str(runs), "--threads", str(threads))
    out = run_child(command)
    data = json.loads(out["stdout"])
    if name.startswith("torchship"):
        data = {"p50_ms": data["latency_ms"]["p50"], "first_ms": data["first_ms"],
                "load_ms": data["load_ms"]}
    data["peak_rss_mb"] = out["peak_rss_mb"]
    return data


def measure(paths: Dict[str, str], rounds: int, runs: int, threads: int) -> Dict[str, list]:
    samples: Dict[str, list] = {name: [] for name in RUNNERS}
    for number in range(rounds):
        for name in RUNNERS:
            progress(f"round {number + 1}/{rounds}: {name}")
            samples[name].append(run_once(name, paths, runs, threads))
    return samples


# ---- the report, from the results file only -------------------------------------------------

def render(results: dict) -> str:
    rows = {name: summarize(samples) for name, samples in results["samples"].items()}
    ort = rows["ONNX Runtime"]["p50_ms"]
    eager = rows["Python eager"]["p50_ms"]
    aoti = rows["torchship AOTInductor"]
    env = results["environment"]
    lines = [
        "# TorchScript vs AOTInductor (and Python eager, ONNX Runtime)",
        "",
        f"Measured {env['date']} by `bench/formats.py` on {env['cpu']} ({env['cores']} CPUs), "
        f"{env['threads']} threads, {results['rounds']} interleaved rounds of {results['runs']} "
        f"timed runs, each runner in a fresh process per round. torch {env['torch']}, "
        f"onnxruntime {env['onnxruntime']}, {env['torchship']}. fp32 ResNet34 "
        "(torchvision, random weights), one 1 x 3 x 224 x 224 input. p50: the best round's "
        "median (the least disturbed by the shared machine); the rest: the median over rounds.",
        "",
        "| runner | p50 ms | vs ONNX Runtime | vs eager | first inference | first / p50 | load ms "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in RUNNERS:
        row = rows[name]
        lines.append(f"| {name} | {row['p50_ms']:.1f} | {row['p50_ms'] / ort:.2f}x | "
                     f"{row['p50_ms'] / eager:.2f}x | {row['first_ms']:.1f} ms | "
                     f"{row['first_ms'] / row['p50_ms']:.2f}x | {row['load_ms']:.0f} | "
                     f"{row['peak_rss_mb']:.0f} |")
    ratio = aoti["p50_ms"] / ort
    first = aoti["first_ms"] / aoti["p50_ms"]
    lines += [
        "",
        "Goals (issue 12), from the table:",
        "",
        f"- AOTInductor p50 <= {GOALS['aoti_vs_ort']}x ONNX Runtime's: {ratio:.2f}x, "
        f"{'met' if ratio <= GOALS['aoti_vs_ort'] else 'not met'}.",
        f"- AOTInductor first inference <= {GOALS['first_over_steady']}x its p50: {first:.2f}x, "
        f"{'met' if first <= GOALS['first_over_steady'] else 'not met'}.",
        "",
        "torchship's runners are `torchship bench` with its defaults: the TorchScript archive is "
        "frozen and optimized at load (verified against its golden vectors) and both formats "
        "run their golden inputs twice at load (warm-up), all of it part of their load time, so "
        "that the first request does not pay for it; Python eager and ONNX Runtime have no "
        "warm-up of their own, and their first inference is their first call. The AOTInductor "
        "package was compiled at export (frozen weights, this CPU's vector ISA); its load "
        "includes extracting and dlopening its shared library.",
        "",
        f"Peak RSS: the `torchship` process holds {results['cli_baseline_rss_mb']:.0f} MB before "
        "it loads any model (`torchship --version`: the libtorch it links, mapped and relocated "
        "at start; of a CUDA build only the CPU part, the CUDA part being loaded for a CUDA "
        "device); the models add the rest.",
        "",
    ]
    return "\n".join(lines)


def environment(threads: int) -> dict:
    import onnxruntime
    import torch
    cpu = cpu_model()
    # The first line: "torchship X (libtorch Y, ...)"; backends and protocols follow.
    version = subprocess.run([CLI, "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
    return {"date": datetime.date.today().isoformat(), "cpu": cpu, "cores": os.cpu_count(),
            "threads": threads, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "torchship": version}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--worker")
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--environment", action="store_true")
    args = parser.parse_args(argv)
    paths = {name: os.path.join(WORK, f"resnet34{ext}") for name, ext in
             (("weights", ".pth"), ("pt", ".pt"), ("pt2", ".pt2"), ("onnx", ".onnx"),
              ("input", "_input.npy"))}
    if args.worker:
        print(json.dumps(worker(args.worker, paths, args.runs, args.threads)))
        return
    if args.prepare:
        prepare(args.threads)
        return
    if args.environment:
        print(json.dumps(environment(args.threads)))
        return
    if not args.render:
        # This process stays small (no torch): Linux keeps a process's peak RSS across exec,
        # so children forked from a process holding torch would all report its size.
        started = time.time()
        here = module_command(sys.executable, "formats", "--threads", str(args.threads))
        subprocess.run(here + ["--prepare"], check=True, env=child_env())
        env = json.loads(subprocess.run(here + ["--environment"], check=True,
                                        capture_output=True, text=True,
                                        env=child_env()).stdout)
        results = {"rounds": args.rounds, "runs": args.runs, "environment": env,
                   "cli_baseline_rss_mb": run_child([CLI, "--version"])["peak_rss_mb"],
                   "samples": measure(paths, args.rounds, args.runs, args.threads),
                   "seconds": time.time() - started}
        os.makedirs(RESULTS_FOLDER, exist_ok=True)
        with open(RESULTS, "w") as f:
            json.dump(results, f, indent=2)
        if sys.stderr.isatty():
            sys.stderr.write("\r" + " " * 78 + "\r")
    if not os.path.exists(RESULTS):
        sys.exit(f"no {os.path.relpath(RESULTS, ROOT)}: run python -m bench formats without "
                 "--render to measure")
    with open(RESULTS) as f:
        results = json.load(f)
    with open(REPORT, "w") as f:
        f.write(render(results))
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main()
