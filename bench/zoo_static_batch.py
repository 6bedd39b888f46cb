"""The static batch-1 model inside torchship.export's AOTInductor packages, measured as a lever:
the package as torchship.export writes it (the exporter keeps the static model only where it
timed it faster than the dynamic one) and the same package without it (the dynamic model is the
same compiled code: the "without" package is the other less its batch_1 folder and manifest
entry), at batch 1 and 8, beside ONNX Runtime and OpenVINO fp32 in the same interleaved rounds,
each runner a fresh process.

    bash bench/setup.sh && scripts/build.sh
    python3 -m bench zoo_static_batch [--models a,b] [--rounds 2] [--runs 10]

Results: bench/results/zoo-static-batch.json, rendered into the "Benchmark zoo" section by
bench/zoo_report.py. This process imports no torch (children would inherit its peak RSS).
"""

import datetime
import json
import os
import subprocess
import time
import zipfile
from typing import Dict, List, Optional

from bench import runners, zoo, zoo_report
from bench.child_processes import child_env, module_command

MODELS = ["resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny",
          "regnet_y_800mf", "efficientnet_lite0", "vit_b_16", "densenet121", "mnasnet1_0",
          "shufflenet_v2_x1_0"]
WITH, WITHOUT = "torchship.export .pt2", "torchship.export .pt2 without static batch 1"


def without_static_models(source: str, target: str) -> None:
    """A copy of the package without its static models: their folders and manifest entry go,
    every other entry is copied as it is (the dynamic model's code and weights unchanged)."""
    with zipfile.ZipFile(source) as zin:
        manifest_name = next(n for n in zin.namelist() if n.endswith("/extra/torchship.json"))
        manifest = json.loads(zin.read(manifest_name))
        static = [m["model"] for m in manifest["export"].pop("static_batches", [])]
        dropped = tuple(f"/data/aotinductor/{model}/" for model in static)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
            for info in zin.infolist():
                if any(folder in info.filename for folder in dropped):
                    continue
                data = zin.read(info)
                if info.filename == manifest_name:
                    data = json.dumps(manifest, indent=2).encode()
                zout.writestr(info, data)


def jobs(case: dict, batch: int, paths: Dict[str, str], runs: int,
         threads: int) -> Dict[str, List[str]]:
    npy = case["inputs"][str(batch)]
    spec = {"onnx": case["onnx"], "input": npy}
    return {
        "ONNX Runtime": runners.worker_command(paths["python"], "onnxruntime", spec, runs,
                                               threads),
        "OpenVINO fp32": runners.worker_command(paths["python"], "openvino",
                                                {**spec, "precision": "f32"}, runs, threads),
        WITHOUT: runners.command(paths["cli"], case["without"], npy, runs),
        WITH: runners.command(paths["cli"], case["package"], npy, runs),
    }


def main(argv: Optional[List[str]] = None) -> None:
    args, paths, threads = zoo.zoo_setup(__doc__, MODELS, argv)
    models = args.model_list
    started = time.time()
    cases, compile_seconds = [], {}
    for number, name in enumerate(models):
        runners.progress(f"zoo static batch: exporting {name} ({number + 1}/{len(models)})")
        begun = time.time()
        run = subprocess.run(module_command(paths["python"], "zoo_models", paths["work"], name,
                                            "--static-batch"), check=True, env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        case = json.loads(run.stdout.strip().splitlines()[-1])
        compile_seconds[name] = round(time.time() - begun, 1)
        case["without"] = os.path.join(os.path.dirname(case["package"]), "exported_dynamic.pt2")
        without_static_models(case["package"], case["without"])
        case["bytes"] = {WITH: os.path.getsize(case["package"]),
                         WITHOUT: os.path.getsize(case["without"])}
        with zipfile.ZipFile(case["package"]) as package:
            manifest = next(n for n in package.namelist() if n.endswith("/extra/torchship.json"))
            case["static_kept"] = bool(json.loads(package.read(manifest))["export"].get(
                "static_batches"))
        cases.append(case)
    exported = time.time()
    found = zoo.measure(cases, paths, args.rounds, args.runs, threads, jobs, "static batch ")
    results = {
        "date": datetime.date.today().isoformat(), "cpu": runners.cpu_model(),
        "threads": threads, "rounds": args.rounds, "runs": args.runs,
        "versions": zoo.versions(paths), "export_seconds": exported - started,
        "compile_seconds": compile_seconds, "seconds": time.time() - started,
        "command": f"python3 -m bench zoo_static_batch --models {args.models} --rounds "
                   f"{args.rounds} --runs {args.runs}",
        "cases": cases, "results": found}
    runners.clear_progress()
    zoo_report.publish(zoo_report.STATIC_BATCH_FILE, results)


if __name__ == "__main__":
    main()
