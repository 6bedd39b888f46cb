"""The benchmark zoo: torchship against Python eager, ONNX Runtime and OpenVINO on the
architectures people deploy (bench/zoo_models.py: CNNs, vision transformers, a detector, the
article's segmentation, a pretrained EfficientNet-Lite0, a text encoder, and held-out models),
at batch 1 and 8, fp32, on the PyPI stack.

    bash bench/setup.sh && scripts/build.sh          # the peers, the pretrained model, the CLI
    python3 -m bench zoo [--models a,b] [--rounds 2] [--runs 10] [--plain-packages] [--forms]
    python3 -m bench zoo_report                      # the page section again from the results

Runners, each a fresh process per measurement, in interleaved rounds (drift on a shared machine
hits all alike), all on the same threads (the CPUs this process may use):
  Python eager          the nn.Module under inference_mode, the faster memory format
  ONNX Runtime          torch.onnx.export's file, all graph optimizations
  OpenVINO fp32         the same file, static shape, INFERENCE_PRECISION_HINT=f32
  OpenVINO default      the same, OpenVINO's own precision (bf16 where the CPU has AVX512_BF16)
  torchship ...         `torchship bench FILE --input NPY --json`, no other flags, on the plain
                        torch.jit.trace archive (also with --no-optimize: the module as stored),
                        the archive, the package and the OpenVINO archive torchship.export
                        writes (the last also with --precision bf16 on CPUs with native bf16),
                        and with --plain-packages a plain aoti_compile_and_package package.
A cell is the best round's median. Results: bench/results/zoo.json; the "Benchmark zoo" section
of docs/benchmarks.md is rendered from it (bench/zoo_report.py). With --forms only the peers and
torchship.export's three forms run, into bench/results/zoo-forms.json, rendered as that
section's "torchship's three forms" part.

This process imports no torch (children would inherit its peak RSS).
"""

import argparse
import datetime
import json
import os
import subprocess
import time
from typing import Callable, Dict, List, Optional, Tuple

from bench import runners, zoo_report
from bench.child_processes import child_env, module_command

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MODELS = ["resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "regnet_y_800mf",
          "vit_b_16", "swin_t", "ssdlite320", "lraspp", "efficientnet_lite0", "text_encoder",
          "densenet121", "mnasnet1_0", "shufflenet_v2_x1_0"]
LOG = os.path.join(ROOT, "build", "bench", "zoo", "log.txt")
VARIANT = "torchship.export .pt2, variant"
BF16_RUNNER = "torchship.export .ov, bf16"
AUTO_RUNNER = "torchship.export auto"
AUTO_BF16_RUNNER = "torchship.export auto, precision auto"
TORCHSHIP_FILES = {"torchship plain .pt": ("plain_pt", []),
                   "torchship plain .pt, as stored": ("plain_pt", ["--no-optimize"]),
                   "torchship plain .pt2": ("plain_pt2", []),
                   "torchship.export .pt": ("exported_pt", []),
                   "torchship.export .pt2": ("exported_pt2", []),
                   "torchship.export .ov": ("exported_ov", []),
                   # the same archive in bf16, where the CPU computes it natively
                   BF16_RUNNER: ("exported_ov", ["--precision", "bf16"]),
                   # the recommended export: every form, the engine (and with --precision auto,
                   # bf16 where it agrees) chosen at load (bench/zoo_models.py --auto)
                   AUTO_RUNNER: ("exported_auto", []),
                   AUTO_BF16_RUNNER: ("exported_auto", ["--precision", "auto"]),
                   # a lever under trial: the package an exporter variant wrote
                   # (bench/zoo_models.py --variant-packages), timed in the same rounds
                   VARIANT: ("exported_variant_pt2", [])}


def stack_paths() -> Dict[str, str]:
    """The PyPI stack's interpreter and CLI (runners.stack_paths), and the zoo's files."""
    paths = runners.stack_paths("pypi")
    return {**paths, "work": os.path.join(paths["build"], "bench", "zoo")}


def has_bf16() -> bool:
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def make_cases(paths: Dict[str, str], models: List[str], plain_packages: bool,
               reuse: bool) -> List[dict]:
    cases = []
    for number, name in enumerate(models):
        case_file = os.path.join(paths["work"], name, "case.json")
        if not (reuse and os.path.exists(case_file)):
            runners.progress(f"zoo: exporting {name} ({number + 1}/{len(models)})")
            command = module_command(paths["python"], "zoo_models", paths["work"], name,
                                     *(["--plain-packages"] if plain_packages else []))
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=child_env())
        with open(case_file) as f:
            cases.append(json.load(f))
    return cases


# --forms: the peers and torchship's forms of one pipeline only (zoo_report's forms section)
FORMS_RUNNERS = ("ONNX Runtime", "OpenVINO fp32", "OpenVINO default (bf16)",
                 "torchship.export .pt", "torchship.export .pt2", "torchship.export .ov",
                 BF16_RUNNER)


# --auto: the peers and the recommended archive of every form (zoo_report's auto section)
AUTO_RUNNERS = ("ONNX Runtime", "OpenVINO fp32", "OpenVINO default (bf16)", AUTO_RUNNER,
                AUTO_BF16_RUNNER)


def auto_jobs(case: dict, batch: int, paths: Dict[str, str], runs: int,
              threads: int) -> Dict[str, List[str]]:
    return {runner: command for runner, command in jobs(case, batch, paths, runs, threads).items()
            if runner in AUTO_RUNNERS}


def forms_jobs(case: dict, batch: int, paths: Dict[str, str], runs: int,
               threads: int) -> Dict[str, List[str]]:
    return {runner: command for runner, command in jobs(case, batch, paths, runs, threads).items()
            if runner in FORMS_RUNNERS}


def jobs(case: dict, batch: int, paths: Dict[str, str], runs: int,
         threads: int) -> Dict[str, List[str]]:
    python = paths["python"]
    npy = case["inputs"][str(batch)]
    spec = {"eager": {"kind": "zoo", "model": case["id"]}, "input": npy,
            "onnx": case["files"].get("onnx")}
    out = {"Python eager": runners.worker_command(python, "eager", spec, runs, threads)}
    if spec["onnx"]:
        out["ONNX Runtime"] = runners.worker_command(python, "onnxruntime", spec, runs, threads)
        out["OpenVINO fp32"] = runners.worker_command(python, "openvino",
                                                      {**spec, "precision": "f32"}, runs, threads)
        if has_bf16():
            out["OpenVINO default (bf16)"] = runners.worker_command(python, "openvino", spec,
                                                                    runs, threads)
    for runner, (key, flags) in TORCHSHIP_FILES.items():
        if runner in (BF16_RUNNER, AUTO_BF16_RUNNER) and not has_bf16():
            continue
        if key in case["files"]:
            out[runner] = runners.command(paths["cli"], case["files"][key], npy, runs) + flags
    return out


def add_every_form_archives(paths: Dict[str, str], cases: List[dict],
                            reuse: bool) -> List[dict]:
    """Each case with torchship.export(format="auto")'s archive (bench/zoo_models.py --auto);
    with `reuse`, an earlier run's is kept."""
    updated = []
    for number, case in enumerate(cases):
        if reuse and "exported_auto" in case["seconds"]:
            updated.append(case)
            continue
        runners.progress(f"zoo: exporting every form of {case['id']} ({number + 1}/{len(cases)})")
        subprocess.run(module_command(paths["python"], "zoo_models", paths["work"], case["id"],
                                      "--auto"), check=True, env=child_env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(paths["work"], case["id"], "case.json")) as f:
            updated.append(json.load(f))
    return updated


def log(line: str) -> None:
    """A line of the run's log (build/bench/zoo/log.txt), for a run left in the background."""
    runners.progress(line)
    with open(LOG, "a") as f:
        f.write(time.strftime("%H:%M:%S ") + line + "\n")


def measure(cases: List[dict], paths: Dict[str, str], rounds: int, runs: int, threads: int,
            jobs_of: Optional[Callable[..., Dict[str, List[str]]]] = None,
            label: str = "") -> Dict[str, Dict[str, dict]]:
    """{model: {batch: {"samples": {runner: [...]}, "failures": {runner: why}}}}: every runner
    of `jobs_of(case, batch, paths, runs, threads)` (this zoo's `jobs` by default) in a fresh
    process, the cases and batches interleaved round by round. A case's batches are its
    "batches", else the keys of its "inputs"."""
    jobs_of = jobs_of or jobs
    batches_of = {case["id"]: [str(b) for b in case.get("batches", case.get("inputs", []))]
                  for case in cases}
    found: Dict[str, Dict[str, dict]] = {
        case["id"]: {b: {"samples": {}, "failures": {}} for b in batches_of[case["id"]]}
        for case in cases}
    for number in range(rounds):
        for case in cases:
            for batch in batches_of[case["id"]]:
                cell = found[case["id"]][batch]
                for runner, command in jobs_of(case, int(batch), paths, runs, threads).items():
                    if runner in cell["failures"]:
                        continue
                    where = f"{label}round {number + 1}: {case['id']} b{batch} {runner}"
                    try:
                        child = runners.run_child(command)
                        data = json.loads(child["stdout"])
                    except (RuntimeError, ValueError) as error:
                        cell["failures"][runner] = str(error)[:300]
                        log(f"{where}: {error}")
                        continue
                    if runner.startswith("torchship"):
                        data = {"p50_ms": data["latency_ms"]["p50"], "load_ms": data["load_ms"],
                                "first_ms": data["first_ms"], "notes": data["notes"],
                                "optimization": data.get("optimization")}
                    data["peak_rss_mb"] = child["peak_rss_mb"]
                    cell["samples"].setdefault(runner, []).append(data)
                    log(f"{where}: {data['p50_ms']:.2f} ms")
    return found


def zoo_arguments(description: str, models: List[str],
                  argv: Optional[List[str]] = None) -> argparse.Namespace:
    """--models (checked against the zoo; `args.model_list` holds them), --rounds, --runs: what
    the zoo's scripts on a subset of its models take (from `argv`, else the command line)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models", default=",".join(models))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    args.model_list = args.models.split(",")
    unknown = [name for name in args.model_list if name not in MODELS]
    if unknown:
        raise SystemExit(f"unknown zoo model {unknown[0]!r}: expected some of {', '.join(MODELS)}")
    return args


def zoo_setup(doc: str, models: List[str], argv: Optional[List[str]] = None
              ) -> Tuple[argparse.Namespace, Dict[str, str], int]:
    """What a script on a subset of the zoo starts with: its arguments (zoo_arguments of `argv`,
    described by the first paragraph of its `doc`), the stack's paths with the work folder made,
    and the threads every runner gets (the CPUs this process may use)."""
    args = zoo_arguments(doc.split("\n\n")[0], models, argv)
    paths = stack_paths()
    os.makedirs(paths["work"], exist_ok=True)
    return args, paths, len(os.sched_getaffinity(0))


def versions(paths: Dict[str, str]) -> Dict[str, str]:
    script = ("import torch, torchvision, onnxruntime, openvino; "
              "print(torch.__version__, torchvision.__version__, onnxruntime.__version__, "
              "openvino.get_version())")
    torch_v, vision, ort, ov = subprocess.run([paths["python"], "-c", script],
                                              capture_output=True, text=True,
                                              check=True).stdout.split()
    cli = subprocess.run([paths["cli"], "--version"], capture_output=True,
                         text=True).stdout.strip().splitlines()[0]
    return {"torch": torch_v, "torchvision": vision, "onnxruntime": ort, "openvino": ov,
            "torchship": cli}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--plain-packages", action="store_true",
                        help="also compile plain aoti_compile_and_package packages (minutes "
                             "per model)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the exported files of an earlier run")
    parser.add_argument("--forms", action="store_true",
                        help="time only the peers and torchship.export's three forms, into "
                             "bench/results/zoo-forms.json (the forms section's)")
    parser.add_argument("--auto", action="store_true",
                        help="export the archive of every form beside an earlier run's files "
                             "and time it against the peers, into bench/results/zoo-auto.json")
    parser.add_argument("--results", default="",
                        help="where the results go (default: zoo.json, with --forms "
                             "zoo-forms.json, with --auto zoo-auto.json)")
    parser.add_argument("--variant", default="",
                        help="what the exporter variant that wrote exported_variant.pt2 does "
                             "(bench/zoo_models.py --variant-packages), for the page")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    unknown = [name for name in models if name not in MODELS]
    if unknown:
        raise SystemExit(f"unknown zoo model {unknown[0]!r}: expected some of {', '.join(MODELS)}")
    args.results = args.results or (zoo_report.FORMS_FILE if args.forms else
                                    zoo_report.AUTO_FILE if args.auto else
                                    zoo_report.RESULTS_FILE)
    paths = stack_paths()
    threads = len(os.sched_getaffinity(0))
    started = time.time()
    cases = make_cases(paths, models, args.plain_packages, args.reuse or args.auto)
    if args.auto:
        cases = add_every_form_archives(paths, cases, args.reuse)
    exported = time.time()
    found = measure(cases, paths, args.rounds, args.runs, threads,
                    forms_jobs if args.forms else auto_jobs if args.auto else None)
    results = {
        "date": datetime.date.today().isoformat(), "cpu": runners.cpu_model(),
        "cpus": os.cpu_count(), "threads": threads, "bf16_cpu": has_bf16(),
        "rounds": args.rounds, "runs": args.runs, "versions": versions(paths),
        "variant": args.variant,
        "export_seconds": exported - started, "seconds": time.time() - started,
        "command": f"python3 -m bench zoo --models {args.models} --rounds {args.rounds} "
                   f"--runs {args.runs}" + (" --plain-packages" if args.plain_packages else "") +
                   (" --forms" if args.forms else "") + (" --auto" if args.auto else ""),
        "cases": cases, "results": found}
    runners.clear_progress()
    zoo_report.publish(args.results, results)


if __name__ == "__main__":
    main()
