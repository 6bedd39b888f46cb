"""AOTInductor's CPU options, tried one at a time on zoo models: each variant compiled from the
same torch.export program and timed by `torchship bench` (a fresh process, interleaved rounds),
beside the package torchship.export writes.

    PYTHONPATH=python PY -m bench zoo_levers [--models mobilenet_v3_large,efficientnet_b0]

PY is the PyPI stack's interpreter (it compiles; torchship from python/). Variants:
  torchship.export      freezing (weights as constants, oneDNN-prepacked), dynamic batch 1..4096
  static batch          the same options, the batch fixed at the benchmark's
  no freezing           AOTInductor's defaults (what a plain aoti_compile_and_package does)
  max-autotune          + max_autotune (inductor benchmarks its GEMM templates at compile time)
  no layout opt.        + layout_optimization off (no channels-last conversion of convolutions)
Writes bench/results/zoo-levers.json, which bench/zoo_report.py renders.
"""

import argparse
import json
import os
import subprocess
import time
from typing import Dict, List, Optional

import numpy as np
import torch

from bench import zoo, zoo_models, zoo_report

LEVERS_FILE = os.path.join(zoo_report.RESULTS, "zoo-levers.json")


def compile_variant(model: torch.nn.Module, x: torch.Tensor, path: str, dynamic: bool,
                    options: Dict[str, object]) -> float:
    from torch.export import Dim

    from torchship import aoti
    from torchship.dynamic_dims import BATCH_MAX
    shapes = ({0: Dim("batch", min=1, max=BATCH_MAX)},) if dynamic else None
    started = time.monotonic()
    with torch.no_grad():
        program = torch.export.export(model, (x,), dynamic_shapes=shapes)
        with aoti.compiler_environment("native"), aoti.size_oblivious():
            torch._inductor.aoti_compile_and_package(program, package_path=path,
                                                     inductor_configs=options)
    return time.monotonic() - started


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mobilenet_v3_large,efficientnet_b0")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="keep variants compiled before")
    parser.add_argument("--compile-only", action="store_true",
                        help="compile the variants, time nothing (then --reuse)")
    args = parser.parse_args(argv)
    # torchship from python/ (PYTHONPATH): imported here, after --help, before any work.
    from torchship import aoti
    paths = zoo.stack_paths()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    base = aoti.inductor_options("native")
    variants = {"static batch": (False, base),
                "no freezing": (True, {k: v for k, v in base.items() if k != "freezing"}),
                "max-autotune": (True, {**base, "max_autotune": True}),
                "no layout opt.": (True, {**base, "layout_optimization": False})}
    found = {}
    for name in args.models.split(","):
        folder = os.path.join(paths["work"], name)
        with open(os.path.join(folder, "case.json")) as f:
            case = json.load(f)
        model = zoo_models.build(name)
        npy = case["inputs"]["1"]
        x = torch.from_numpy(np.load(npy))
        files = {"torchship.export": case["files"]["exported_pt2"]}
        compile_seconds = {}
        for variant, (dynamic, options) in variants.items():
            path = os.path.join(folder, "lever-" + variant.replace(" ", "_").rstrip(".") + ".pt2")
            if args.reuse and os.path.exists(path):
                files[variant] = path
                continue
            # A dynamic batch is exported from batch 8, as torchship.export's zoo packages are
            # (torch.export specializes an example of size 1).
            example = torch.from_numpy(np.load(case["inputs"]["8"])) if dynamic else x
            try:
                compile_seconds[variant] = compile_variant(model, example, path, dynamic,
                                                           options)
                files[variant] = path
            except Exception as error:
                compile_seconds[variant] = str(error).strip().splitlines()[-1][:200]
        if args.compile_only:
            continue
        samples: Dict[str, list] = {variant: [] for variant in files}
        for _ in range(args.rounds):
            for variant, path in files.items():
                out = subprocess.run([paths["cli"], "bench", path, "--input", npy, "--runs",
                                      str(args.runs), "--json"], capture_output=True, text=True)
                if out.returncode == 0:
                    samples[variant].append(json.loads(out.stdout)["latency_ms"]["p50"])
        found[name] = {"batch": "1", "p50_ms": {v: min(s) for v, s in samples.items() if s},
                       "compile_seconds": compile_seconds}
        print(json.dumps({name: found[name]}), flush=True)
    if args.compile_only:
        return
    with open(LEVERS_FILE, "w") as f:
        json.dump({"command": "python -m bench zoo_levers --models " + args.models,
                   "rounds": args.rounds, "runs": args.runs, "levers": found}, f, indent=1)


if __name__ == "__main__":
    main()
