"""Where a zoo model's time goes as torchship runs it: oneDNN's own timing of each primitive
(ONEDNN_VERBOSE=1), per forward, by kind (depthwise, pointwise and other convolutions, matmuls,
the rest), against the forward's latency; what remains is the time outside oneDNN (AOTInductor's
generated C++ kernels, or ATen's operators in TorchScript, and the glue between them).

    python3 -m bench zoo_profile [--cases mobilenet_v3_large:1,...] [--runs 10]

Needs bench/zoo.py's files (build/bench/zoo) and results (bench/results/zoo.json, for the peers'
latency); writes bench/results/zoo-profile.json, which bench/zoo_report.py renders.
A forward's share is measured as the difference between a run of 2N and one of N timed forwards,
so that load, verification and warm-up drop out.
"""

import argparse
import json
import os
import re
import subprocess
from typing import Dict, List, Optional

from bench import zoo, zoo_report

PROFILE_FILE = os.path.join(zoo_report.RESULTS, "zoo-profile.json")
SHAPE = re.compile(r"(?:mb\d+_)?(?:g(\d+))?ic(\d+)oc\d+.*?kh(\d+).*?kw(\d+)")


def kind_of(primitive: str, descriptor: str) -> str:
    if primitive != "convolution":
        return {"inner_product": "matmul"}.get(primitive, primitive)
    found = SHAPE.search(descriptor)
    if not found:
        return "convolution (other)"
    groups, channels, kh, kw = (int(found.group(1) or 1), int(found.group(2)),
                                int(found.group(3)), int(found.group(4)))
    if groups > 1 and groups == channels:
        return "convolution (depthwise)"
    if groups > 1:
        return "convolution (grouped)"
    if kh == 1 and kw == 1:
        return "convolution (1x1)"
    return "convolution (other)"


def primitive_ms(cli: str, path: str, npy: str, runs: int) -> Dict[str, float]:
    command = [cli, "bench", path, "--input", npy, "--runs", str(runs), "--json"]
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         env={**os.environ, "ONEDNN_VERBOSE": "1"}).stdout
    totals: Dict[str, float] = {}
    for line in out.splitlines():
        fields = line.split(",")
        if not line.startswith("onednn_verbose") or "exec" not in fields:
            continue
        at = fields.index("exec")  # oneDNN 3.x: onednn_verbose,v1,primitive,exec,cpu,KIND,...
        kind = kind_of(fields[at + 2], fields[-2])
        totals[kind] = totals.get(kind, 0.0) + float(fields[-1])
    return totals


def profile(case: dict, batch: str, runner: str, cli: str, runs: int) -> Dict[str, object]:
    key = zoo.TORCHSHIP_FILES[runner][0]
    path, npy = case["files"][key], case["inputs"][batch]
    short = primitive_ms(cli, path, npy, runs)
    long = primitive_ms(cli, path, npy, 2 * runs)
    per_forward = {kind: (long.get(kind, 0.0) - short.get(kind, 0.0)) / runs
                   for kind in set(short) | set(long)}
    per_forward = {k: v for k, v in sorted(per_forward.items(), key=lambda kv: -kv[1]) if v > 0}
    return {"runner": runner, "primitives_ms": per_forward}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="mobilenet_v3_large:1,efficientnet_b0:1,"
                        "convnext_tiny:1,vit_b_16:1,resnet50:1,mnasnet1_0:1")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    paths = zoo.stack_paths()
    with open(zoo_report.RESULTS_FILE) as f:
        results = json.load(f)
    cases = {case["id"]: case for case in results["cases"]}
    table = zoo_report.cells(results)
    found: List[dict] = []
    for item in args.cases.split(","):
        model, batch = item.split(":")
        row = table[model][batch]
        runner = zoo_report.recommended(row)
        if runner is None:
            continue
        measured = profile(cases[model], batch, runner, paths["cli"], args.runs)
        measured.update({"model": model, "batch": batch, "latency_ms": row[runner],
                         "peer_ms": zoo_report.fastest_peer(row),
                         "eager_ms": row.get("Python eager")})
        found.append(measured)
        print(json.dumps(measured), flush=True)
    with open(PROFILE_FILE, "w") as f:
        json.dump({"runs": args.runs, "command": "python3 -m bench zoo_profile --cases " +
                   args.cases, "profiles": found}, f, indent=1)
    zoo_report.write_section()


if __name__ == "__main__":
    main()
