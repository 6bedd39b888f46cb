"""The runners: each measurement is one fresh process that loads its model, runs it and prints
one JSON object; its peak RSS comes from the kernel when the orchestrator reaps it. Every runner
uses the same thread count, the CPUs the process may use (what torchship picks by default).

    PY -m bench runners eager|onnxruntime|openvino|profile|operators CASE_JSON RUNS THREADS

(the orchestrators start it as worker_command() with child_env(): bench/child_processes.py).
torchship itself runs as `torchship bench ARCHIVE --input NPY --json` with no other flags (see
command()), and the one-image jobs as whole commands (one_image_commands()).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

from bench.child_processes import child_env, module_command
from bench.example_modules import example_module

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def progress(message: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{message[:78]:<78}")
        sys.stderr.flush()


def stack_paths(stack: str) -> Dict[str, str]:
    """The interpreter and build folder scripts/env.sh gives the stack."""
    out = subprocess.run(["bash", "-c", 'source scripts/env.sh && echo "$PY" && echo "$BUILD"'],
                         cwd=ROOT, env={**os.environ, "TORCHSHIP_TORCH": stack},
                         capture_output=True, text=True, check=True).stdout.split("\n")
    build = os.path.join(ROOT, out[1])
    return {"python": out[0], "build": build, "cli": os.path.join(build, "bin", "torchship"),
            "models": os.path.join(build, "models")}


def clear_progress() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 78 + "\r")


def run_child(command: List[str], env=None) -> Dict[str, object]:
    """Runs a command: its stdout, wall time and the child's own peak RSS (reaped by wait4, so
    that no other process's size is counted). Its environment is child_env()'s unless given."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env or child_env())
    out = process.stdout.read()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        last = (err.decode(errors="replace").strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"exit {process.returncode}: {last[:200]}")
    return {"stdout": out.decode(), "seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform
        return platform.processor() or platform.machine()


def timed(call: Callable[[], object], runs: int) -> Dict[str, float]:
    """The first call (after load), two untimed ones, then the median of `runs`."""
    started = time.perf_counter()
    call()
    first = (time.perf_counter() - started) * 1000
    for _ in range(2):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return {"first_ms": first, "p50_ms": statistics.median(times)}


def eager_model(spec: dict):
    import torch
    import torchvision
    if spec["kind"] == "zoo":
        from bench import zoo_models
        return zoo_models.build(spec["model"])
    if spec["kind"] == "resnet34":
        model = torchvision.models.resnet34()
        model.load_state_dict(torch.load(spec["weights"]))
    elif spec["kind"] == "classifier":
        # seed 0: the weights the archives hold
        model = example_module("article", "pipelines").resnet34_classifier()
    else:
        fashion = example_module("fashion_mnist", "model")
        model = fashion.FashionPipeline(fashion.FashionNet())
        model.net.load_state_dict(torch.load(spec["weights"]))
    return model.eval()


def eager(case: dict, runs: int, threads: int) -> dict:
    """Python eager, configured as well as a user reasonably can: the same threads,
    inference_mode, and the faster of the default and channels_last memory formats."""
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    started = time.perf_counter()
    model = eager_model(case["eager"])
    x = torch.from_numpy(np.load(case["input"]))
    load_ms = (time.perf_counter() - started) * 1000
    result = None
    for layout in ("contiguous", "channels_last"):
        if layout == "channels_last":
            model = model.to(memory_format=torch.channels_last)
            if x.dim() == 4 and x.is_floating_point():
                x = x.contiguous(memory_format=torch.channels_last)

        def call():
            with torch.inference_mode():
                model(x)
        measured = timed(call, runs)
        measured["layout"] = layout
        if result is None:
            result = measured
        elif measured["p50_ms"] < result["p50_ms"]:
            result = {**measured, "first_ms": result["first_ms"]}  # the first call ever
    result["load_ms"] = load_ms
    result["torch"] = torch.__version__
    return result


def onnxruntime(case: dict, runs: int, threads: int) -> dict:
    import numpy as np
    import onnxruntime as ort
    started = time.perf_counter()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(case["onnx"], options, providers=["CPUExecutionProvider"])
    x = np.load(case["input"])
    load_ms = (time.perf_counter() - started) * 1000
    result = timed(lambda: session.run(None, {"input": x}), runs)
    result["load_ms"] = load_ms
    result["onnxruntime"] = ort.__version__
    return result


def openvino(case: dict, runs: int, threads: int) -> dict:
    """OpenVINO on the same ONNX file, reshaped to the input's static shape (as its docs advise
    for latency) and compiled for latency on the same threads; case["precision"] "f32" forces
    fp32 (INFERENCE_PRECISION_HINT), else OpenVINO's default, bf16 on CPUs with AVX512_BF16."""
    import numpy as np
    import openvino as ov
    started = time.perf_counter()
    core = ov.Core()
    model = core.read_model(case["onnx"])
    x = np.load(case["input"])
    model.reshape({model.inputs[0]: ov.PartialShape(list(x.shape))})
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if case.get("precision") == "f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    load_ms = (time.perf_counter() - started) * 1000
    result = timed(lambda: request.infer({0: x}), runs)
    result["load_ms"] = load_ms
    result["openvino"] = ov.get_version()
    result["precision"] = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    return result


def profile(case: dict, runs: int, threads: int) -> dict:
    """Where the fp32 plain ResNet34's time goes as torchship runs it: oneDNN's own timing of
    each primitive (ONEDNN_VERBOSE=1), per forward, against the network's arithmetic, this
    machine's large sgemm and its nominal FMA peak."""
    import torch
    torch.set_num_threads(threads)
    model = eager_model(case["eager"])
    macs = [0]

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            kernel = module.in_channels // module.groups * module.kernel_size[0] * \
                module.kernel_size[1]
            macs[0] += output.numel() * kernel
        elif isinstance(module, torch.nn.Linear):
            macs[0] += output.numel() * module.in_features
    hooks = [m.register_forward_hook(count) for m in model.modules()]
    import numpy as np
    with torch.no_grad():
        model(torch.from_numpy(np.load(case["input"])))
    for hook in hooks:
        hook.remove()

    command = [case["cli"], "bench", case["archives"]["fp32"], "--input", case["input"],
               "--runs", str(runs), "--json"]
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         env={**os.environ, "ONEDNN_VERBOSE": "1"}).stdout
    executed = []
    for line in out.splitlines():
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in fields:
            at = fields.index("exec")  # oneDNN 2.x: onednn_verbose,exec,...; 3.x: ...,primitive,exec
            executed.append((fields[at + 2], fields[at + 3], line, float(fields[-1])))
    # The stem convolution (3 -> 64 channels) opens each forward: the last `runs` forwards are
    # the timed ones.
    stems = [i for i, (kind, _, line, _) in enumerate(executed)
             if kind == "convolution" and "ic3oc64" in line]
    forwards = min(runs, len(stems))
    by_kind: Dict[str, float] = {}
    for kind, implementation, _, ms in executed[stems[-forwards]:] if forwards else []:
        name = f"{kind} ({implementation})"
        by_kind[name] = by_kind.get(name, 0.0) + ms
    latency = json.loads(subprocess.run(command, capture_output=True, text=True,
                                        check=True).stdout)["latency_ms"]["p50"]

    size = 2048
    a, b = torch.randn(size, size), torch.randn(size, size)
    gemm_ms = timed(lambda: torch.mm(a, b), 10)["p50_ms"]
    with open("/proc/cpuinfo") as f:
        text = f.read()
    mhz = max(float(line.split(":")[1]) for line in text.splitlines()
              if line.startswith("cpu MHz"))
    lanes = 16 if "avx512f" in text else 8
    per_forward = {name: ms / max(forwards, 1) for name, ms in by_kind.items()}
    return {"gflop": 2 * macs[0] / 1e9, "latency_ms": latency,
            "gemm_gflops": 2 * size ** 3 / (gemm_ms / 1000) / 1e9, "mhz": mhz, "lanes": lanes,
            "threads": threads, "forwards": forwards,
            "primitives_ms": dict(sorted(per_forward.items(), key=lambda kv: -kv[1]))}


def operators(case: dict, runs: int, threads: int) -> dict:
    """Time per operator of each reduced-precision archive of the case, by torch.profiler on the
    archive loaded in Python and frozen (the kernels torchship's libtorch runs), per forward."""
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    x = torch.from_numpy(np.load(case["input"]))
    found = {}
    for precision in ("bf16", "int8"):
        if precision not in case["archives"]:
            continue
        module = torch.jit.freeze(torch.jit.load(case["archives"][precision]).eval())
        with torch.inference_mode():
            for _ in range(3):
                module(x)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(runs):
                    module(x)
        rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in rows) / runs / 1000
        found[precision] = {"total_ms": total, "operators_ms": {
            e.key: e.self_cpu_time_total / runs / 1000 for e in rows[:6]}}
    return found


def command(cli: str, archive: str, npy: str, runs: int) -> List[str]:
    """torchship as a user runs it on a plain archive: no flags beyond the input."""
    return [cli, "bench", archive, "--input", npy, "--runs", str(runs), "--json"]


PYTHON_ONE_IMAGE = """
import sys
import cv2, torch
model = torch.jit.load(sys.argv[1]).eval()
image = cv2.cvtColor(cv2.imread(sys.argv[2]), cv2.COLOR_BGR2RGB)
image = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA)
with torch.inference_mode():
    print(int(model(torch.from_numpy(image)).argmax()))
"""


def one_image_commands(python: str, cli: str, archive: str, image: str) -> Dict[str, List[str]]:
    """One photo classified from process start to printed answer, as each user would do it."""
    return {"torchship classify": [cli, "classify", archive, image, "--top-k", "1"],
            "Python (torch.jit.load + cv2)": [python, "-c", PYTHON_ONE_IMAGE, archive, image]}


WORKERS = {"eager": eager, "onnxruntime": onnxruntime, "openvino": openvino, "profile": profile,
           "operators": operators}


def worker_command(python: str, worker: str, case: dict, runs: int, threads: int) -> List[str]:
    """One measurement by `worker` in a fresh process of `python` (run_child gives it
    child_env())."""
    return module_command(python, "runners", worker, json.dumps(case), str(runs), str(threads))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("worker", choices=sorted(WORKERS))
    parser.add_argument("case_json", help="the case, as JSON")
    parser.add_argument("runs", type=int)
    parser.add_argument("threads", type=int)
    args = parser.parse_args(argv)
    print(json.dumps(WORKERS[args.worker](json.loads(args.case_json), args.runs, args.threads)))


if __name__ == "__main__":
    main()
