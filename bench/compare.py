"""torchship against Python eager and ONNX Runtime, side by side in one run per PyTorch stack, on
archives used with no flags. Cases (bench/cases.py): ResNet34 as a plain torch.jit.save archive,
the article's classifier in fp32 / bf16 / int8, the trained Fashion-MNIST CNN at batch 256.
Runners (bench/runners.py): each measurement a fresh process, rounds interleaved so that drift
on this shared machine hits every runner alike. Also one photo classified end to end (CLI vs
Python: wall time and peak RSS), the first inference after load, and a profile of where the
fp32 ResNet34's time goes. Results go to bench/results/compare-STACK.json; docs/benchmarks.md
is rendered from them by bench/report.py (versions and verdicts come from the data).

    bash bench/setup.sh                                  # ONNX Runtime from PyPI, and more
    scripts/demo.sh && TORCHSHIP_TORCH=debian scripts/demo.sh   # builds and build/models
    python3 -m bench compare [--stacks pypi,debian] [--rounds 3] [--runs 30]
    python3 -m bench report                              # the report again from the results

This process imports no torch: Linux keeps a process's peak RSS across fork and exec, so children
of a process holding torch would all report its size.
"""

import argparse
import datetime
import json
import os
import subprocess
import time
from typing import Dict, List, Optional

from bench import report, runners
from bench.child_processes import child_env, module_command

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def measure_stack(stack: str, ort_python: str, rounds: int, runs: int, threads: int) -> dict:
    paths = runners.stack_paths(stack)
    work = os.path.join(ROOT, "build", "bench", stack)
    runners.progress(f"{stack}: making the cases")
    subprocess.run(module_command(paths["python"], "cases", work, paths["models"]), check=True,
                   stdout=subprocess.DEVNULL, env=child_env())
    with open(os.path.join(work, "cases.json")) as f:
        made = json.load(f)

    def jobs_of(case: dict) -> Dict[str, List[str]]:
        jobs = {"Python eager": runners.worker_command(paths["python"], "eager", case, runs,
                                                       threads),
                "ONNX Runtime": runners.worker_command(ort_python, "onnxruntime", case, runs,
                                                       threads)}
        for precision, archive in case["archives"].items():
            jobs[f"torchship {precision}"] = runners.command(paths["cli"], archive, case["input"],
                                                             runs)
        return jobs

    samples: Dict[str, Dict[str, list]] = {case["id"]: {} for case in made["cases"]}
    failures: Dict[str, Dict[str, str]] = {case["id"]: {} for case in made["cases"]}
    one_image = runners.one_image_commands(paths["python"], paths["cli"],
                                           made["one_image_archive"], made["photo"])
    one_image_samples: Dict[str, list] = {name: [] for name in one_image}
    for number in range(rounds):
        for case in made["cases"]:
            for name, command in jobs_of(case).items():
                if name in failures[case["id"]]:
                    continue
                runners.progress(f"{stack}: round {number + 1}/{rounds}, {case['id']}, {name}")
                try:
                    child = runners.run_child(command)
                except RuntimeError as error:
                    failures[case["id"]][name] = str(error)
                    continue
                data = json.loads(child["stdout"])
                if name.startswith("torchship"):
                    data = {"p50_ms": data["latency_ms"]["p50"], "first_ms": data["first_ms"],
                            "load_ms": data["load_ms"], "optimized": data["optimized"],
                            "notes": data["notes"], "threads": data["threads"]}
                data["peak_rss_mb"] = child["peak_rss_mb"]
                samples[case["id"]].setdefault(name, []).append(data)
        for name, command in one_image.items():
            runners.progress(f"{stack}: round {number + 1}/{rounds}, one image, {name}")
            child = runners.run_child(command)
            one_image_samples[name].append({"seconds": child["seconds"],
                                            "peak_rss_mb": child["peak_rss_mb"]})
    runners.progress(f"{stack}: profiling ResNet34")
    resnet = dict(made["cases"][0], cli=paths["cli"])
    profile = json.loads(runners.run_child(runners.worker_command(
        paths["python"], "profile", resnet, 10, threads))["stdout"])
    runners.progress(f"{stack}: operators of the reduced-precision archives")
    classifier = next(case for case in made["cases"] if case["id"] == "classifier")
    profile["reduced_precision"] = json.loads(runners.run_child(runners.worker_command(
        paths["python"], "operators", classifier, 10, threads))["stdout"])
    accuracy_file = os.path.join(paths["models"], "fashion_mnist_accuracy.json")
    accuracy = json.load(open(accuracy_file)) if os.path.exists(accuracy_file) else {}
    version = subprocess.run([paths["cli"], "--version"], capture_output=True,
                             text=True).stdout.strip()
    baseline_rss = runners.run_child([paths["cli"], "--version"])["peak_rss_mb"]
    return {"stack": stack, "cases": made["cases"], "samples": samples, "failures": failures,
            "one_image": one_image_samples, "profile": profile, "accuracy": accuracy,
            "torchship": version, "cli_baseline_rss_mb": baseline_rss}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stacks", default="pypi,debian")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    threads = len(os.sched_getaffinity(0))
    ort_python = runners.stack_paths("pypi")["python"]
    os.makedirs(report.RESULTS, exist_ok=True)
    for stack in args.stacks.split(","):
        started = time.time()
        results = measure_stack(stack, ort_python, args.rounds, args.runs, threads)
        results.update({
            "date": datetime.date.today().isoformat(), "cpu": runners.cpu_model(),
            "cpus": os.cpu_count(), "threads": threads, "rounds": args.rounds,
            "runs": args.runs, "seconds": time.time() - started,
            "command": f"python3 -m bench compare --stacks {stack} --rounds {args.rounds} "
                       f"--runs {args.runs}"})
        with open(os.path.join(report.RESULTS, f"compare-{stack}.json"), "w") as f:
            json.dump(results, f, indent=1)
    runners.clear_progress()
    report.write()


if __name__ == "__main__":
    main()
