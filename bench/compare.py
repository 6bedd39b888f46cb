"""Side-by-side latency of the same models and inputs, interleaved in one run:
Python eager, Python TorchScript (as loaded, and frozen + optimize_for_inference) and torchship
(`torchship bench`, C++). Also the one-image job end to end (process start to answer) through
the CLI and through Python, with peak RSS. Writes docs/benchmarks.md.

    /usr/bin/python3 bench/compare.py [--rounds 5] [--runs 20] [--threads 2]

Needs build/bin/torchship and build/models (scripts/demo.sh makes both).
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "examples", "article"))
sys.path.insert(0, os.path.join(ROOT, "examples", "fashion_mnist"))
CLI = os.path.join(ROOT, "build", "bin", "torchship")
MODELS = os.path.join(ROOT, "build", "models")


def progress(message: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{message:<70}")
        sys.stderr.flush()


def python_median_ms(module, args, runs: int) -> float:
    with torch.no_grad():
        for _ in range(3):
            module(*args)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            module(*args)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def torchship_median_ms(archive: str, npy: str, runs: int, threads: int) -> float:
    out = subprocess.run([CLI, "bench", archive, "--input", npy, "--runs", str(runs),
                          "--threads", str(threads), "--json"], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)["latency_ms"]["p50"]


def models(threads: int):
    """(name, eager module, archive, input tensor) for each benchmarked model."""
    from pipelines import lraspp_segmentation, resnet34_classifier
    from model import FashionNet, FashionPipeline
    generator = torch.Generator().manual_seed(0)
    classifier = resnet34_classifier().eval()  # seed 0: the weights export.py wrote
    fashion = FashionPipeline(FashionNet())
    weights = [f for f in os.listdir(os.path.expanduser("~/.cache/torchship"))
               if f.startswith("fashion_mnist-")]
    fashion.net.load_state_dict(torch.load(os.path.join(os.path.expanduser("~/.cache/torchship"),
                                                        sorted(weights)[-1])))
    fashion.eval()
    segmentation = lraspp_segmentation().eval()
    return [
        ("ResNet34 classifier, 224x224, batch 1", classifier,
         os.path.join(MODELS, "classifier.pt"),
         torch.randint(0, 256, (224, 224, 3), dtype=torch.uint8, generator=generator)),
        ("LR-ASPP segmentation, 1 image 320x480", segmentation,
         os.path.join(MODELS, "segmentation.pt"),
         torch.randint(0, 256, (1, 320, 480, 3), dtype=torch.uint8, generator=generator)),
        ("Fashion-MNIST CNN, batch 1", fashion, os.path.join(MODELS, "fashion_mnist.pt"),
         torch.randint(0, 256, (1, 28, 28, 1), dtype=torch.uint8, generator=generator)),
        ("Fashion-MNIST CNN, batch 256", fashion, os.path.join(MODELS, "fashion_mnist.pt"),
         torch.randint(0, 256, (256, 28, 28, 1), dtype=torch.uint8, generator=generator)),
    ]


def end_to_end(image: str, rounds: int):
    """Process start to printed answer for one image, CLI vs Python, with peak RSS."""
    archive = os.path.join(MODELS, "classifier.pt")
    python_job = (
        "import cv2, torch\n"
        f"m = torch.jit.load({archive!r}).eval()\n"
        f"img = cv2.cvtColor(cv2.imread({image!r}), cv2.COLOR_BGR2RGB)\n"
        "img = cv2.resize(img, (224, 224))\n"
        "with torch.no_grad():\n"
        "    print(int(m(torch.from_numpy(img)).argmax()))\n")
    jobs = {"torchship classify": [CLI, "classify", archive, image, "--top-k", "1"],
            "Python (torch.jit.load + cv2)": [sys.executable, "-c", python_job]}
    results = {name: {"seconds": [], "rss": []} for name in jobs}
    for _ in range(rounds):
        for name, command in jobs.items():
            wrapper = ("import resource, subprocess, sys, time\n"
                       "start = time.perf_counter()\n"
                       "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
                       "elapsed = time.perf_counter() - start\n"
                       "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
                       "print(elapsed, rss)\n")
            out = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True,
                                 text=True, check=True).stdout.split()
            results[name]["seconds"].append(float(out[0]))
            results[name]["rss"].append(int(out[1]) / 1024)
    return {name: (statistics.median(r["seconds"]), max(r["rss"])) for name, r in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="Side-by-side benchmarks; writes docs/benchmarks.md")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, eager, archive, x in models(args.threads):
            npy = os.path.join(tmp, "input.npy")
            np.save(npy, x.numpy())
            scripted = torch.jit.load(archive).eval()
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(scripted))
            variants = {"Python eager": lambda: python_median_ms(eager, (x,), args.runs),
                        "Python TorchScript (as loaded)":
                            lambda: python_median_ms(scripted, (x,), args.runs),
                        "Python TorchScript (frozen + optimize_for_inference)":
                            lambda: python_median_ms(frozen, (x,), args.runs),
                        "torchship (C++)": lambda: torchship_median_ms(archive, npy, args.runs,
                                                                       args.threads)}
            medians = {key: [] for key in variants}
            for round_number in range(args.rounds):  # interleaved: drift hits all alike
                for key, measure in variants.items():
                    progress(f"{name}: round {round_number + 1}/{args.rounds}, {key}")
                    medians[key].append(measure())
            rows.append((name, {key: statistics.median(v) for key, v in medians.items()}))

        image = os.path.join(tmp, "photo_1920x1080.jpg")
        photo = cv2.imread("/usr/lib/python3/dist-packages/skimage/data/chelsea.png")
        cv2.imwrite(image, cv2.resize(photo, (1920, 1080)))
        progress("one image end to end")
        e2e = end_to_end(image, args.rounds)
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 70 + "\r")
    write_report(args, rows, e2e)
    print(f"wrote {args.out}")


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def write_report(args, rows, e2e) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `/usr/bin/python3 bench/compare.py` on {datetime.date.today()}: "
        f"{cpu_model()}, {os.cpu_count()} cores, {args.threads} intra-op threads for every "
        f"variant, torch {torch.__version__} (Debian), libtorch 1.13 with OpenBLAS. Each cell is "
        f"the median of {args.rounds} interleaved rounds, each round the median of {args.runs} "
        "timed runs after warm-up. The machine is shared and noisy: compare ratios within a "
        "row, not numbers across runs.",
        "",
        "## Latency (ms, lower is better) and ratio to Python eager",
        "",
        "| model | Python eager | Python TorchScript | Python frozen + optimized | torchship (C++) | torchship / eager |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in rows:
        eager = m["Python eager"]
        ours = m["torchship (C++)"]
        lines.append(f"| {name} | {eager:.2f} | {m['Python TorchScript (as loaded)']:.2f} | "
                     f"{m['Python TorchScript (frozen + optimize_for_inference)']:.2f} | "
                     f"{ours:.2f} | {ours / eager:.2f}x |")
    lines += [
        "",
        "torchship optimizes at load (freeze + optimize_for_inference) only when the optimized "
        "module still reproduces the archive's golden vectors; LR-ASPP's optimized kernels move "
        "its logits beyond the tolerance, so torchship runs it as stored. Its row is faster in "
        "C++ for another reason: the CLI keeps freed tensor memory in the process "
        "(`mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD)`); with glibc's defaults, LR-ASPP's "
        "activations above 32 MB are mapped afresh and page-fault on every call (~115 ms instead "
        "of ~27 ms here). Python gets the same with `MALLOC_MMAP_THRESHOLD_=1000000000 "
        "MALLOC_TRIM_THRESHOLD_=1000000000` in its environment; the Python columns use the "
        "defaults a researcher runs with. The same effect makes Python's rows depend on what "
        "ran before in its process (all Python variants share one process here): Fashion-MNIST "
        "at batch 256 took 11 ms in Python eager in one full run of this script and 75 ms in "
        "another.",
        "",
        "## One image end to end (process start to answer), ResNet34 classifier, 1920x1080 JPEG",
        "",
        "| job | wall time (s) | peak RSS (MB) |",
        "|---|---|---|",
    ]
    for name, (seconds, rss) in e2e.items():
        lines.append(f"| {name} | {seconds:.2f} | {rss:.0f} |")
    names = list(e2e)
    ours, theirs = e2e[names[0]], e2e[names[1]]
    lines += [
        "",
        f"Ratios: wall time {ours[0] / theirs[0]:.2f}x, peak RSS {ours[1] / theirs[1]:.2f}x "
        "(torchship / Python).",
        "",
        "## Not measured yet",
        "",
        "ONNX Runtime (onnxruntime-node), OpenCV DNN, bf16 and int8 variants, and the "
        "preprocessing-only comparison are not in this run; see the open performance issue.",
        "",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
