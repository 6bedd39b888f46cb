"""bf16 and int8 on the zoo: the archives torchship.export writes in each precision, timed by
`torchship bench` beside OpenVINO's own precision (bf16 on CPUs with AVX512_BF16) and its fp32,
and the pretrained EfficientNet-Lite0's top-1 agreement with fp32 on real photos, in one run.

    bash bench/setup.sh && scripts/build.sh
    python3 -m bench zoo_precision [--models a,b] [--rounds 2] [--runs 10]

Accuracy: python3-skimage's photos (bench/zoo_models.py TEST_PHOTOS), 12 views each (crops and
mirrors), run by the torchship CLI (`torchship run ARCHIVE --input VIEWS.npy --out DIR`) and by
OpenVINO; int8 was calibrated on other photos. Results: bench/results/zoo-precision.json,
rendered into the "Benchmark zoo" section by bench/zoo_report.py.

This process imports no torch (children would inherit its peak RSS).
"""

import datetime
import json
import os
import subprocess
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

from bench import runners, zoo, zoo_report
from bench.child_processes import child_env, module_command

# The image classifiers of the zoo (FX quantization needs a traceable module; the detector's
# and the text encoder's int8 are not attempted) and the pretrained model for accuracy.
MODELS = ["resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny",
          "regnet_y_800mf", "vit_b_16", "efficientnet_lite0"]
ARCHIVES = zoo_report.PRECISION_ARCHIVES
OPENVINO_LOGITS = """
import sys, numpy as np, openvino as ov
core = ov.Core()
model = core.read_model(sys.argv[1])
x = np.load(sys.argv[2])
model.reshape({model.inputs[0]: ov.PartialShape(list(x.shape))})
config = {} if sys.argv[4] == "default" else {"INFERENCE_PRECISION_HINT": "f32"}
compiled = core.compile_model(model, "CPU", config)
np.save(sys.argv[3], compiled.create_infer_request().infer({0: x})[0])
print(compiled.get_property("INFERENCE_PRECISION_HINT"))
"""


def jobs(case: dict, batch: int, paths: Dict[str, str], runs: int,
         threads: int) -> Dict[str, List[str]]:
    npy = case["inputs"][str(batch)]
    out = {}
    if "onnx" in case["files"]:
        spec = {"onnx": case["files"]["onnx"], "input": npy}
        out["OpenVINO fp32"] = runners.worker_command(
            paths["python"], "openvino", {**spec, "precision": "f32"}, runs, threads)
        out["OpenVINO default"] = runners.worker_command(paths["python"], "openvino", spec,
                                                         runs, threads)
    for runner, key in ARCHIVES.items():
        if key in case["files"]:
            out[runner] = runners.command(paths["cli"], case["files"][key], npy, runs)
    return out


def top1(logits: np.ndarray) -> np.ndarray:
    return logits.reshape(logits.shape[0], -1).argmax(axis=1)


def accuracy(case: dict, paths: Dict[str, str]) -> dict:
    """Top-1 of every precision and of OpenVINO on the test photos' views, against torchship's
    fp32 archive (the reference: the function the researcher exported)."""
    views = os.path.join(os.path.dirname(case["files"]["exported_pt"]), "test_photos.npy")
    predictions, precisions = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for runner, key in ARCHIVES.items():
            if key not in case["files"]:
                continue
            out = os.path.join(tmp, key)
            subprocess.run([paths["cli"], "run", case["files"][key], "--input", views, "--out",
                            out], check=True, capture_output=True)
            logits = [f for f in os.listdir(out) if f.endswith(".npy")]
            predictions[runner] = top1(np.load(os.path.join(out, logits[0])))
        for name, hint in (("OpenVINO fp32", "f32"), ("OpenVINO default", "default")):
            out = os.path.join(tmp, f"openvino_{hint}.npy")
            run = subprocess.run([paths["python"], "-c", OPENVINO_LOGITS, case["files"]["onnx"],
                                  views, out, hint], check=True, capture_output=True, text=True)
            precisions[name] = run.stdout.strip()
            predictions[name] = top1(np.load(out))
    reference = predictions["torchship fp32 .pt"]
    return {"views": int(reference.size), "precisions": precisions,
            "agreement": {runner: float((p == reference).mean())
                          for runner, p in predictions.items()},
            "top1": {runner: p.tolist() for runner, p in predictions.items()}}


def main(argv: Optional[List[str]] = None) -> None:
    args, paths, threads = zoo.zoo_setup(__doc__, MODELS, argv)
    models = args.model_list
    started = time.time()
    cases = []
    for number, name in enumerate(models):
        runners.progress(f"zoo precision: exporting {name} ({number + 1}/{len(models)})")
        run = subprocess.run(module_command(paths["python"], "zoo_models", paths["work"], name,
                                            "--precisions"), check=True, env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        cases.append(json.loads(run.stdout.strip().splitlines()[-1]))
    exported = time.time()
    found = zoo.measure(cases, paths, args.rounds, args.runs, threads, jobs, "precision ")
    accuracies = {case["id"]: accuracy(case, paths) for case in cases
                  if case["id"] == "efficientnet_lite0" and "exported_pt" in case["files"]}
    results = {
        "date": datetime.date.today().isoformat(), "cpu": runners.cpu_model(),
        "threads": threads, "bf16_cpu": zoo.has_bf16(), "rounds": args.rounds,
        "runs": args.runs, "versions": zoo.versions(paths),
        "export_seconds": exported - started, "seconds": time.time() - started,
        "command": f"python3 -m bench zoo_precision --models {args.models} --rounds "
                   f"{args.rounds} --runs {args.runs}",
        "cases": cases, "results": found, "accuracy": accuracies}
    runners.clear_progress()
    zoo_report.publish(zoo_report.PRECISION_FILE, results)


if __name__ == "__main__":
    main()
