"""docs/benchmarks.md from bench/results/compare-*.json (bench/compare.py writes them): the
tables, the goals with their verdicts and the profile all come from the measured data.

    python3 -m bench report
"""

import argparse
import json
import os
import statistics
from typing import Dict, List, Optional

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
RESULTS = os.path.join(ROOT, "bench", "results")
REPORT = os.path.join(ROOT, "docs", "benchmarks.md")
STACK_NAMES = {"pypi": "PyPI's torch 2.x", "debian": "Debian's torch 1.13"}
PRECISIONS = ("fp32", "bf16", "int8")


def summarize(samples: List[dict]) -> dict:
    """The best round's p50 (the least disturbed by the shared machine), the median of the rest."""
    best = min(samples, key=lambda s: s["p50_ms"])
    return {"p50_ms": best["p50_ms"], "first_ms": statistics.median(s["first_ms"] for s in samples),
            "load_ms": statistics.median(s["load_ms"] for s in samples),
            "peak_rss_mb": statistics.median(s["peak_rss_mb"] for s in samples),
            "rounds": len(samples), **{k: best[k] for k in ("layout", "notes", "optimized",
                                                            "threads", "torch", "onnxruntime")
                                       if k in best}}


def verdict(value: Optional[float], limit: float) -> str:
    if value is None:
        return "n/a"
    return "met" if value <= limit else "**not met**"


def case_rows(results: dict) -> Dict[str, Dict[str, dict]]:
    """{case: {runner: summary}} of a results file's samples."""
    return {case_id: {name: summarize(samples) for name, samples in by_runner.items()}
            for case_id, by_runner in results["samples"].items()}


def goals(results: dict, rows: Dict[str, Dict[str, dict]]) -> List[tuple]:
    """(goal, value, limit) for issue 13's goals, from the data."""
    def ratio(case: str, a: str, b: str) -> Optional[float]:
        row = rows.get(case, {})
        return row[a]["p50_ms"] / row[b]["p50_ms"] if a in row and b in row else None
    one = {name: (statistics.median(s["seconds"] for s in samples),
                  statistics.median(s["peak_rss_mb"] for s in samples))
           for name, samples in results["one_image"].items()}
    cli, python = one["torchship classify"], one["Python (torch.jit.load + cv2)"]
    plain = rows["resnet34"].get("torchship fp32")
    return [
        ("ResNet34 plain archive fp32 / Python eager", ratio("resnet34", "torchship fp32",
                                                             "Python eager"), 0.75),
        ("ResNet34 plain archive fp32 / ONNX Runtime", ratio("resnet34", "torchship fp32",
                                                             "ONNX Runtime"), 1.0),
        ("article classifier bf16 / Python eager fp32", ratio("classifier", "torchship bf16",
                                                              "Python eager"), 0.5),
        ("article classifier int8 / Python eager fp32", ratio("classifier", "torchship int8",
                                                              "Python eager"), 0.2),
        ("one image end to end, wall time: CLI / Python", cli[0] / python[0], 0.45),
        ("one image end to end, peak RSS: CLI / Python", cli[1] / python[1], 0.7),
        ("first inference after load / steady p50 (ResNet34 plain archive)",
         plain["first_ms"] / plain["p50_ms"] if plain else None, 1.5),
    ]


def stack_section(results: dict) -> List[str]:
    stack = results["stack"]
    rows = case_rows(results)
    eager_torch = next((row["Python eager"].get("torch") for row in rows.values()
                        if "Python eager" in row), "?")
    ort = next((row["ONNX Runtime"].get("onnxruntime") for row in rows.values()
                if "ONNX Runtime" in row), "?")
    lines = [
        f"## {STACK_NAMES.get(stack, stack)}",
        "",
        f"Measured {results['date']} by `{results['command']}` ({results['seconds'] / 60:.0f} "
        f"min) on {results['cpu']}, {results['cpus']} CPUs, {results['threads']} threads for "
        f"every runner. torch {eager_torch}; {results['torchship']}; ONNX Runtime {ort} (PyPI). "
        f"{results['rounds']} interleaved rounds, each runner a fresh process per round with "
        f"{results['runs']} timed runs after two untimed ones; a cell is the best round's median.",
        "",
        "### Goals",
        "",
        "| goal | value | target | verdict |",
        "|---|---|---|---|",
    ]
    measured = goals(results, rows)
    for label, value, limit in measured:
        shown = "n/a" if value is None else f"{value:.2f}x"
        lines.append(f"| {label} | {shown} | <= {limit} | {verdict(value, limit)} |")
    runner_names = ["Python eager", "ONNX Runtime"] + [f"torchship {p}" for p in PRECISIONS]
    lines += ["", "### Latency (ms, p50, lower is better)", "",
              "| case | " + " | ".join(runner_names) + " |", "|---|" + "---|" * len(runner_names)]
    for case in results["cases"]:
        row, failed = rows.get(case["id"], {}), results["failures"].get(case["id"], {})
        cells = [f"{row[name]['p50_ms']:.2f}" if name in row else
                 ("fails¹" if name in failed else "n/a") for name in runner_names]
        lines.append(f"| {case['name']} | " + " | ".join(cells) + " |")
    layouts = {case["id"]: rows[case["id"]]["Python eager"].get("layout")
               for case in results["cases"] if "Python eager" in rows.get(case["id"], {})}
    lines += ["", "Python eager runs the nn.Module under `inference_mode` in both memory formats "
              "and keeps the faster (" + ", ".join(f"{k}: {v}" for k, v in layouts.items()) +
              "). ONNX Runtime runs the same module exported by `torch.onnx.export`, all graph "
              "optimizations. torchship is `torchship bench ARCHIVE --input NPY`, nothing else."]
    failures = [(cid, name, text) for cid, by in results["failures"].items()
                for name, text in by.items()]
    notes = [(case["id"], note) for case in results["cases"] for note in case["notes"]]
    if failures:
        lines += ["", "¹ Failed in this run: " + "; ".join(f"{c}, {n}: `{t}`"
                                                         for c, n, t in failures)]
    if notes:
        lines += ["", "Not measured: " + "; ".join(f"{c}: {n}" for c, n in notes)]

    lines += ["", "### torchship in detail", "",
              "| case | archive | p50 ms | first inference / p50 | load ms | peak RSS MB | "
              "optimized at load |", "|---|---|---|---|---|---|---|"]
    for case in results["cases"]:
        for precision in PRECISIONS:
            row = rows.get(case["id"], {}).get(f"torchship {precision}")
            if not row:
                continue
            how = next((n for n in row.get("notes", []) if n.startswith(("optimized",
                                                                         "not optimized"))),
                       "yes" if row.get("optimized") else "no")
            lines.append(f"| {case['id']} | {precision} | {row['p50_ms']:.2f} | "
                         f"{row['first_ms'] / row['p50_ms']:.2f}x | {row['load_ms']:.0f} | "
                         f"{row['peak_rss_mb']:.0f} | {how} |")
    lines += ["", f"The `torchship` process holds {results['cli_baseline_rss_mb']:.0f} MB before "
              "it loads a model (`torchship --version`: the libtorch it links, mapped and "
              "relocated at start)."]

    lines += ["", "### One photo end to end (process start to printed answer)", "",
              "| job | wall time s | peak RSS MB |", "|---|---|---|"]
    for name, samples in results["one_image"].items():
        lines.append(f"| {name} | {statistics.median(s['seconds'] for s in samples):.2f} | "
                     f"{statistics.median(s['peak_rss_mb'] for s in samples):.0f} |")
    lines += ["", "A 1920x1080 JPEG of scikit-image's cat, classified by the article's fp32 "
              "archive: `torchship classify ARCHIVE PHOTO --top-k 1` against a Python script "
              "that loads the same archive with `torch.jit.load`, decodes and resizes with cv2 "
              "and prints the argmax. Medians over the rounds."]

    if results.get("accuracy"):
        lines += ["", "### Accuracy per precision (Fashion-MNIST test set, 10,000 images)", "",
                  "| archive | accuracy | change from fp32 |", "|---|---|---|"]
        fp32 = results["accuracy"]["fp32"]["accuracy"]
        for name, entry in results["accuracy"].items():
            change = "" if name == "fp32" else f"{100 * (entry['accuracy'] - fp32):+.2f} points"
            lines.append(f"| {name} | {entry['accuracy']:.2%} | {change} |")

    profile = results["profile"]
    peak = profile["threads"] * profile["mhz"] / 1000 * 2 * profile["lanes"] * 2
    achieved = profile["gflop"] / (profile["latency_ms"] / 1000)
    unmet = [label for label, value, limit in measured if value is not None and value > limit]
    traced = sum(profile["primitives_ms"].values()) or 1.0
    lines += ["", "### Where the fp32 ResNet34's time goes", "",
              f"{profile['gflop']:.2f} GFLOP per image (multiply-adds of the convolutions and the "
              f"classifier, counted by forward hooks, x2) in {profile['latency_ms']:.1f} ms: "
              f"{achieved:.0f} GFLOP/s. On the same {profile['threads']} threads a 2048x2048 "
              f"sgemm through torch reaches {profile['gemm_gflops']:.0f} GFLOP/s; the nominal FMA "
              f"peak at the clock /proc/cpuinfo reports ({profile['threads']} x "
              f"{profile['mhz'] / 1000:.2f} GHz x 2 FMA units x {profile['lanes']} fp32 lanes x "
              f"2) is {peak:.0f} GFLOP/s, and the network runs at "
              f"{100 * achieved / peak:.0f}% of it" +
              (" (above 100%: the cores run faster than that nominal clock, so the convolutions "
               "are at the machine's arithmetic limit)" if achieved > peak else "") +
              ". oneDNN's own timing of its primitives "
              f"(`ONEDNN_VERBOSE=1`, the last {profile['forwards']} forwards; logging slows "
              f"them, to {traced:.1f} ms of primitives per forward), per forward:",
              "", "| primitive (implementation) | ms per forward | share of the primitives |",
              "|---|---|---|"]
    for name, ms in list(profile["primitives_ms"].items())[:8]:
        lines.append(f"| {name} | {ms:.2f} | {100 * ms / traced:.0f}% |")
    for precision, found in profile.get("reduced_precision", {}).items():
        lines += ["", f"The article classifier's {precision} archive, time per operator "
                  f"(`torch.profiler` on the frozen archive in Python: the same kernels), "
                  f"{found['total_ms']:.1f} ms per forward in all:", "",
                  "| operator | ms per forward | share |", "|---|---|---|"]
        for name, ms in found["operators_ms"].items():
            lines.append(f"| `{name}` | {ms:.2f} | {100 * ms / found['total_ms']:.0f}% |")
    if unmet:
        lines += ["", "Goals not met in this run: " + "; ".join(unmet) + "."]
    return lines


VERIFICATION = """## What torchship checks before it runs an optimized model

With no flags, `torchship` (and `Model::load`) replaces a TorchScript module by a faster one
only after that one has reproduced the stored module's outputs by torchship's comparison rule
(`|actual - expected| <= atol + rtol * |expected|`, rtol 1e-4 for fp32 and 1e-2 for bf16 / int8,
atol scaled to each output's magnitude; see python/torchship/tolerance.py) and has run faster
than it. The candidates: `prepacked` (the frozen module with every 2-D convolution of constant
fp32 weights calling oneDNN on weights packed once, a following ReLU or residual addition fused
in; libtorch 2.x), `optimize_for_inference` (frozen + `optimize_for_inference`) and `frozen`
(freezing only). Each is verified, then timed on the same inputs (the best of two to five
forwards after a warm-up, within about 100 ms per candidate), against the stored module timed
the same way; the fastest verified one is kept when it takes less than 97% of the stored
module's time, else the module runs as stored: a pass that helps one architecture slows another
(prepacked oneDNN depthwise convolutions on MobileNetV3), so agreement alone does not decide.
The note says every candidate's time and what choosing added to the load; `--optimization NAME`
(CLI), `LoadOptions::optimization` (C++) and `"optimization"` in a model's config.json (server)
replay a recorded choice, verified but not timed. What they are checked on:

- an archive from `torchship.export`: its golden vectors, at load;
- an archive with a manifest but no golden vectors: inputs synthesized from the manifest's shapes
  and datatypes (fixed seed), against the stored module's outputs on them, at load;
- a plain `torch.jit.save` archive: the first forward's own inputs. That forward runs the stored
  module and returns its answer, then runs the candidates on a copy of the same inputs and
  switches only if one agrees; forwards arriving meanwhile wait for it. `torchship bench`
  does this in its warm-up, as part of the load time it reports.

A candidate that misses, or fails, is dropped and `notes` (`bench --json`, `Model::notes()`)
says which and by how much; `Model::optimization()` (`"optimization"` in `bench --json`) holds
the same as data: each candidate's miss and time, the stored module's time, the choice.
AOTInductor packages were compiled ahead of time and run as they are.
"""


def render(all_results: List[dict]) -> str:
    lines = ["# Benchmarks", "",
             "torchship against the alternatives a user would pick, one section per PyTorch "
             "stack, each from one run of `bench/compare.py` (results in "
             "`bench/results/compare-*.json`, this page rendered from them by "
             "`bench/report.py`). The machine is a shared VM: compare ratios within a run, not "
             "numbers across runs. TorchScript against AOTInductor packages: "
             "[benchmarks-formats.md](benchmarks-formats.md) (`bench/formats.py`). Fourteen "
             "architectures at batch 1 and 8 against ONNX Runtime and OpenVINO: "
             "[Benchmark zoo](#benchmark-zoo) (`bench/zoo.py`). Each benchmark runs from the "
             "repository root as `python -m bench NAME` (`python -m bench --help` lists them); "
             "the commands recorded with earlier results name the script's file instead "
             "(`python3 bench/zoo.py` is today's `python3 -m bench zoo`).", ""]
    for results in all_results:
        lines += stack_section(results) + [""]
    lines += [VERIFICATION]
    # bench/serve_bench.py, bench/protocols.py and bench/zoo.py own their sections: keep them.
    if os.path.exists(REPORT):
        previous = open(REPORT).read()
        for section in ("## Serving under load", "## KServe v2 protocols under load",
                        "## Benchmark zoo"):
            start = previous.find(section)
            if start >= 0:
                end = previous.find("\n## ", start + 1)
                lines += [previous[start:end if end >= 0 else len(previous)].rstrip("\n"), ""]
    return "\n".join(lines)


def replace_section(doc: str, section: str, lines: List[str]) -> None:
    """Puts `lines` (starting with the `section` heading) in place of that section of `doc`, or
    at its end when it has none; the benchmarks that own a section of the page write it this
    way."""
    text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
    start = text.find(section)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    else:
        end = text.find("\n## ", start + len(section))
        rest = text[end + 1:] if end >= 0 else ""
        text = text[:start] + "\n".join(lines).rstrip("\n") + "\n" + ("\n" + rest if rest else "")
    with open(doc, "w") as f:
        f.write(text)
    print(f"updated {doc}")


def write() -> None:
    """docs/benchmarks.md from the compare results (the sections other benchmarks own kept)."""
    found = []
    for stack in ("pypi", "debian"):
        path = os.path.join(RESULTS, f"compare-{stack}.json")
        if os.path.exists(path):
            with open(path) as f:
                found.append(json.load(f))
    if not found:
        raise SystemExit(f"no results in {RESULTS}: run python -m bench compare first")
    text = render(found)
    with open(REPORT, "w") as f:
        f.write(text)
    print(f"wrote {REPORT}")


def main(argv: Optional[List[str]] = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    write()


if __name__ == "__main__":
    main()
