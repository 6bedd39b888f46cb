"""Weights updates against a full re-export, and memory per loaded form, on zoo models.

For each model: the archive of every form with swappable AOTInductor weights
(torchship.export(format="auto", swappable_weights=True)), and the default AOTInductor package
(frozen weights) beside it. A retrained model (other seed) becomes an update
(torchship.export_weights), applied in C++ to each loaded form (`torchship bench --weights`:
Model::with_weights, golden check included). Against it: what a retrained model costs without
updates, the form's export (as the auto export timed it: the same module shapes compile alike)
plus a fresh load. TorchScript is also loaded as stored (without load-time optimization).
Each form is also timed (p50 of a batch-1 forward) and its process's RSS
recorded when loaded, after the runs, and after the runs' freed memory went back to the system,
beside the weights' own size and the RSS of a tiny model of the same form (the fixed overhead
of a process that runs one).

    bash bench/setup.sh && scripts/build.sh
    python -m bench weights_swap [--models resnet50,mobilenet_v3_large,efficientnet_b0]
        [--folder DIR: exports kept there, and reused when there]

Results: bench/results/weights-swap.json, and a table on stdout for docs/benchmarks.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from typing import Dict, List, Optional

import torch

import torchship
from bench import zoo_models

ENGINES = ("torchscript", "aoti", "openvino")
DEFAULT_MODELS = "resnet50,mobilenet_v3_large,efficientnet_b0"
RESULTS = os.path.join(os.path.dirname(__file__), "results", "weights-swap.json")


def cli() -> str:
    build = os.environ.get("TORCHSHIP_BUILD", "build")
    return os.environ.get("TORCHSHIP_CLI", os.path.join(build, "bin", "torchship"))


def bench_json(archive: str, *args: str) -> dict:
    """`torchship bench` on batch 1 in a fresh process, its --json object."""
    result = subprocess.run([cli(), "bench", archive, "--batch-sizes", "1", "--json", *args],
                            capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"torchship bench {archive} {' '.join(args)}: {result.stderr.strip()}")
    return json.loads(result.stdout)


def retrained(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return zoo_models.ZOO[name][0]().eval()


FORM_FILES = {"torchscript": "forms/torchscript.pt", "aoti": "forms/aoti.pt2",
              "openvino": "forms/openvino.ov"}


def export_archives(name: str, folder: str) -> Dict[str, float]:
    """The archive of every form (swappable), each form as an archive of its own, the frozen
    package, and the updates (of the whole archive and of each form); seconds."""
    done = f"{folder}/{name}.seconds.json"
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    seconds = export_all(name, folder)
    with open(done, "w") as f:
        json.dump(seconds, f)
    return seconds


def export_all(name: str, folder: str) -> Dict[str, float]:
    _, make_input, batches, sequence, _, _ = zoo_models.ZOO[name]
    example = make_input(batches[-1])  # as the zoo exports: batch 1 a golden case beside it
    golden = [(make_input(1),)] if len(batches) > 1 else []
    manifest = zoo_models._manifest(name, example, sequence)
    seconds = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = torchship.export(retrained(name, 0), (example,), f"{folder}/{name}.torchship",
                                  manifest=manifest, golden_inputs=golden, format="auto",
                                  swappable_weights=True)
        for form in result.manifest["export"]["forms"]:
            seconds[f"export {form['format']}"] = form["seconds"]
        with zipfile.ZipFile(f"{folder}/{name}.torchship") as archive:
            for engine, record in FORM_FILES.items():
                data = archive.read(f"{name}/{record}")
                with open(f"{folder}/{name}.{engine}", "wb") as f:
                    f.write(data)
        started = time.monotonic()
        torchship.export(retrained(name, 0), (example,), f"{folder}/{name}.pt2",
                         manifest=manifest, golden_inputs=golden, format="aoti")
        seconds["export aoti frozen"] = round(time.monotonic() - started, 1)
        new = retrained(name, 1)
        for base in ["torchship"] + list(ENGINES):
            started = time.monotonic()
            torchship.export_weights(new, f"{folder}/{name}.{base}",
                                     f"{folder}/{name}.{base}.weights")
            seconds[f"export_weights {base}"] = round(time.monotonic() - started, 1)
    return seconds


def weights_mb(name: str) -> float:
    module = retrained(name, 0)
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6


def measure_model(name: str, folder: str, runs: int) -> dict:
    print(f"{name}: exporting", file=sys.stderr, flush=True)
    row = {"model": zoo_models.ZOO[name][5], "weights_mb": round(weights_mb(name), 1),
           "seconds": export_archives(name, folder), "forms": {}}
    for engine in ENGINES:
        print(f"{name}: {engine}", file=sys.stderr, flush=True)
        archive = f"{folder}/{name}.{engine}"
        loaded = bench_json(archive, "--runs", str(runs))
        swapped = bench_json(archive, "--runs", "3", "--weights", f"{archive}.weights")
        row["forms"][engine] = {"load_ms": loaded["load_ms"], "p50_ms": loaded["latency_ms"]["p50"],
                                **rss(loaded), "weights_ms": swapped["weights_ms"],
                                "rss_after_update_mb": swapped["rss_loaded_mb"]}
    stored = bench_json(f"{folder}/{name}.torchscript", "--runs", str(runs),
                        "--optimization", "stored")
    row["forms"]["torchscript stored"] = {"load_ms": stored["load_ms"],
                                          "p50_ms": stored["latency_ms"]["p50"], **rss(stored)}
    frozen = bench_json(f"{folder}/{name}.pt2", "--runs", str(runs))
    row["forms"]["aoti frozen"] = {"load_ms": frozen["load_ms"],
                                   "p50_ms": frozen["latency_ms"]["p50"], **rss(frozen)}
    return row


# `torchship bench`'s RSS fields: when loaded (golden check and warm-up done, their freed memory
# given back), after the timed runs (the allocator keeps what forwards freed, for the next), and
# after that went back to the system too.
RSS_FIELDS = ("rss_loaded_mb", "rss_mb", "rss_released_mb")


def rss(measured: dict) -> Dict[str, float]:
    return {field: round(measured[field], 1) for field in RSS_FIELDS}


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(x)


def overhead(folder: str) -> Dict[str, float]:
    """RSS of a process that runs a model of 72 bytes of weights, per form."""
    path = f"{folder}/tiny.torchship"
    manifest = torchship.Manifest(inputs=[torchship.tensor_spec("x", "FP32", [-1, 8])],
                                  batch_dim=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torchship.export(Tiny().eval(), torch.rand(2, 8), path, manifest=manifest,
                         format="auto", swappable_weights=True, static_batches=())
    return {engine: rss(bench_json(path, "--engine", engine, "--runs", "3")) for engine in ENGINES}


def table(results: dict) -> str:
    """Per model and form: a retrained model as a new export plus a fresh load, against an
    update of that form's archive plus Model::with_weights; speed and memory of the form."""
    lines = ["| model | weights MB | form | export + load s | export_weights + apply s | "
             "update faster by | forward p50 ms (batch 1) | RSS MB: loaded, after runs, released "
             "| (loaded - overhead) / weights | (released - overhead) / weights |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["models"]:
        seconds = row["seconds"]
        for form, measured in row["forms"].items():
            engine = form.split()[0]
            export_s = seconds.get(f"export {form}", seconds[f"export {engine}"])
            full = export_s + measured["load_ms"] / 1e3
            overhead = results["overhead_mb"][engine]
            loaded, released = ((measured[field] - overhead[field]) / row["weights_mb"]
                                for field in ("rss_loaded_mb", "rss_released_mb"))
            rss_cells = ", ".join(f"{measured[field]:.0f}" for field in RSS_FIELDS)
            if "weights_ms" in measured:
                update_s = seconds[f"export_weights {engine}"]
                swap = update_s + measured["weights_ms"] / 1e3
                swap_cells = f"{update_s:.1f} + {measured['weights_ms'] / 1e3:.2f} | " \
                             f"{full / swap:.0f}x"
            elif form == "aoti frozen":
                swap_cells = "— (frozen weights) | —"
            else:
                swap_cells = "(as the optimized form) | —"
            lines.append(f"| {row['model']} | {row['weights_mb']:.1f} | {form} | "
                         f"{export_s:.1f} + {measured['load_ms'] / 1e3:.2f} | {swap_cells} | "
                         f"{measured['p50_ms']:.2f} | {rss_cells} | {loaded:.2f} | "
                         f"{released:.2f} |")
        lines.append(f"| {row['model']} | | every form | | "
                     f"{seconds['export_weights torchship']:.1f} (one update for all) | | | | | |")
    overhead = "; ".join(f"{engine} " + ", ".join(f"{mb[field]:.0f}" for field in RSS_FIELDS)
                         for engine, mb in results["overhead_mb"].items())
    return "\n".join(lines) + f"\n\nOverhead (a process running a 72-byte model), RSS MB " \
                              f"loaded, after runs, released: {overhead}.\n\n" + bound(results)


def bound(results: dict) -> str:
    """Per form, the least per-model overhead F for which every model's RSS when loaded is
    within the process's overhead + F + 1.2 x its weights."""
    least: Dict[str, float] = {}
    for row in results["models"]:
        for form, measured in row["forms"].items():
            base = results["overhead_mb"][form.split()[0]]["rss_loaded_mb"]
            above = measured["rss_loaded_mb"] - base - 1.2 * row["weights_mb"]
            least[form] = max(least.get(form, 0.0), above)
    return "Loaded RSS within the overhead + F + 1.2 x weights for every model, least F: " + \
        ", ".join(f"{form} {mb:.0f} MB" for form, mb in least.items()) + "."


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--folder", help="keep the exports here (and reuse those found)")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="torchship-weights-swap-") as temporary:
        folder = options.folder or temporary
        os.makedirs(folder, exist_ok=True)
        results = {"machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}",
                   "date": time.strftime("%Y-%m-%d"), "overhead_mb": overhead(folder),
                   "models": [measure_model(name, folder, options.runs)
                              for name in options.models.split(",")]}
    os.makedirs(os.path.dirname(options.out), exist_ok=True)
    with open(options.out, "w") as f:
        json.dump(results, f, indent=1)
    print(table(results))


if __name__ == "__main__":
    main()
