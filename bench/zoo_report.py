"""Renders the "Benchmark zoo" section of docs/benchmarks.md from bench/results/zoo.json
(bench/zoo.py writes it): latency per model and batch size, the ratios to the fastest peer, the
goals with verdicts that follow from the data, and what torchship's load-time optimizer chose.

    python3 -m bench zoo_report
"""

import argparse
import json
import math
import os
import statistics
from collections import Counter
from typing import Dict, List, Optional

from bench import report

RESULTS = report.RESULTS
RESULTS_FILE = os.path.join(RESULTS, "zoo.json")
PROFILE_FILE = os.path.join(RESULTS, "zoo-profile.json")  # bench/zoo_profile.py
FORMS_FILE = os.path.join(RESULTS, "zoo-forms.json")  # bench/zoo.py --results, every form
LEVERS_FILE = os.path.join(RESULTS, "zoo-levers.json")  # bench/zoo_levers.py
PRECISION_FILE = os.path.join(RESULTS, "zoo-precision.json")  # bench/zoo_precision.py
SERVE_FILE = os.path.join(RESULTS, "zoo-serve.json")  # bench/zoo_serve.py
ENGINES_FILE = os.path.join(RESULTS, "serve-engines.json")  # bench/serve_engines.py
OV_STATIC_FILE = os.path.join(RESULTS, "zoo-ov-static.json")  # bench/zoo_ov_static.py
AUTO_FILE = os.path.join(RESULTS, "zoo-auto.json")  # bench/zoo.py --auto
AUTO_PROFILE_FILE = os.path.join(RESULTS, "zoo-auto-profile.json")  # bench/zoo_auto_profile.py
# As for AOTInductor's static batches (python/torchship/aoti/static_batches.py): a static form is
# worth its load time and memory only below 97% of the dynamic one's time.
OV_STATIC_KEEP_BELOW = 0.97
# Two engines' shares of their alone throughput, added: 1.0 where they divide the CPUs without
# loss; the goal allows a tenth for the two batchers' queues and the models' different batch sizes.
ENGINES_GOAL = 0.9
STATIC_BATCH_FILE = os.path.join(RESULTS, "zoo-static-batch.json")  # bench/zoo_static_batch.py
# The same script's first run, before the exporter timed the static model: always kept.
STATIC_ALWAYS_FILE = os.path.join(RESULTS, "zoo-static-batch-always.json")
PRECISION_ARCHIVES = {"torchship fp32 .pt": "exported_pt", "torchship bf16 .pt": "exported_bf16_pt",
                      "torchship int8 .pt": "exported_int8_pt"}  # runner: its file's key
SERVING_GOAL = 0.9  # served / in-process throughput, as for ResNet34 ("Serving under load")
SECTION = "## Benchmark zoo"
PEERS = ("ONNX Runtime", "OpenVINO fp32")
COLUMNS = ("Python eager", "ONNX Runtime", "OpenVINO fp32", "torchship plain .pt",
           "torchship plain .pt, as stored", "torchship plain .pt2", "torchship.export .pt",
           "torchship.export .pt2", "torchship.export .ov", "torchship.export .pt2, variant")
# torchship's forms of one pipeline, fp32, and the OpenVINO form in bf16 (FORMS_FILE's section)
FORMS = {"torchship.export .pt": ("TorchScript", "exported_pt"),
         "torchship.export .pt2": ("AOTInductor", "exported_pt2"),
         "torchship.export .ov": ("OpenVINO", "exported_ov")}
BF16_FORM = "torchship.export .ov, bf16"
BF16_PEER = "OpenVINO default (bf16)"
RECOMMENDED = ("torchship.export .pt2", "torchship.export .pt")  # the first that exported
OPTIMIZATION_NOISE = 1.05  # "as stored" and "optimized" runs are separate processes


def best_median(samples: List[dict]) -> Optional[float]:
    values = [s["p50_ms"] for s in samples if "p50_ms" in s]
    return min(values) if values else None


def cells(results: dict) -> Dict[str, Dict[str, Dict[str, Optional[float]]]]:
    """{model: {batch: {runner: best round's median ms}}}"""
    out: Dict[str, Dict[str, Dict[str, Optional[float]]]] = {}
    for model, batches in results["results"].items():
        out[model] = {}
        for batch, cell in batches.items():
            out[model][batch] = {runner: best_median(samples)
                                 for runner, samples in cell["samples"].items()}
    return out


def recommended(row: Dict[str, Optional[float]]) -> Optional[str]:
    return next((name for name in RECOMMENDED if row.get(name)), None)


def fastest_peer(row: Dict[str, Optional[float]]) -> Optional[float]:
    values = [row[name] for name in PEERS if row.get(name)]
    return min(values) if values else None


def best_torchship(row: Dict[str, Optional[float]]) -> Optional[float]:
    values = [v for name, v in row.items()
              if name.startswith("torchship") and "as stored" not in name and
              "variant" not in name and "bf16" not in name and v]
    return min(values) if values else None


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a and b else None


def text(value: Optional[float], digits: int = 2, suffix: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def geomean(values: List[float]) -> Optional[float]:
    return math.exp(statistics.mean(math.log(v) for v in values)) if values else None


def latency_table(results: dict, table: dict, batch: str) -> List[str]:
    columns = [c for c in COLUMNS if any(table[m].get(batch, {}).get(c) for m in table)]
    bf16 = any(table[m].get(batch, {}).get("OpenVINO default (bf16)") for m in table)
    header = ["model"] + columns + (["OpenVINO default (bf16)"] if bf16 else []) + \
        ["recommended / fastest peer", "best torchship / fastest peer"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    titles = {case["id"]: case["name"] for case in results["cases"]}
    for model, batches in table.items():
        row = batches.get(batch)
        if row is None:
            continue
        failures = results["results"][model][batch]["failures"]
        values = []
        for column in columns + (["OpenVINO default (bf16)"] if bf16 else []):
            values.append(text(row.get(column)) if row.get(column) else
                          ("fails" if column in failures else "—"))
        peer = fastest_peer(row)
        chosen = recommended(row)
        values.append(text(ratio(row.get(chosen), peer), suffix="x") if chosen else "—")
        values.append(text(ratio(best_torchship(row), peer), suffix="x"))
        lines.append(f"| {titles.get(model, model)} | " + " | ".join(values) + " |")
    return lines


def goals(table: dict) -> List[tuple]:
    """(goal, value, target, verdict) rows: each follows from the table alone."""
    rows = []
    over, within, ratios = [], 0, []
    slower_than_eager, optimized_slower = [], []
    for model, batches in table.items():
        for batch, row in batches.items():
            chosen = recommended(row)
            value = ratio(row.get(chosen), fastest_peer(row)) if chosen else None
            if value is not None:
                ratios.append(value)
                if value <= 1.0:
                    within += 1
                else:
                    over.append(f"{model} b{batch} {value:.2f}x")
            plain = ratio(row.get("torchship plain .pt"), row.get("Python eager"))
            if plain is not None and plain > 1.0:
                slower_than_eager.append(f"{model} b{batch} {plain:.2f}x")
            package = ratio(row.get("torchship plain .pt2"), row.get("Python eager"))
            if package is not None and package > 1.0:
                slower_than_eager.append(f"{model} b{batch} .pt2 {package:.2f}x")
            optimized = ratio(row.get("torchship plain .pt"),
                              row.get("torchship plain .pt, as stored"))
            if optimized is not None and optimized > OPTIMIZATION_NOISE:
                optimized_slower.append(f"{model} b{batch} {optimized:.2f}x")
    total = len(ratios)
    rows.append(("recommended path / fastest peer, per model and batch", f"{within} of {total} "
                 "within", "<= 1.0x each", "met" if total and within == total else
                 "**not met**: " + ", ".join(over)))
    mean = geomean(ratios)
    rows.append(("recommended path / fastest peer, geometric mean", text(mean, suffix="x"),
                 "<= 0.9x", report.verdict(mean, 0.9)))
    rows.append(("plain archive or package, default flags / Python eager",
                 f"{len(slower_than_eager)} slower", "<= 1.0x each",
                 "met" if not slower_than_eager else "**not met**: " +
                 ", ".join(slower_than_eager)))
    rows.append(("plain archive optimized / as stored", f"{len(optimized_slower)} slower",
                 f"<= 1.0x each (beyond {OPTIMIZATION_NOISE - 1:.0%} between processes)",
                 "met" if not optimized_slower else "**not met**: " +
                 ", ".join(optimized_slower)))
    return rows


def optimization_table(results: dict) -> List[str]:
    lines = ["| model | batch | chosen | as stored ms | candidates ms | choosing took s |",
             "|---|---|---|---|---|---|"]
    for model, batches in results["results"].items():
        for batch, cell in batches.items():
            samples = cell["samples"].get("torchship plain .pt") or []
            reports = [s["optimization"] for s in samples if s.get("optimization")]
            if not reports:
                continue
            last = reports[-1]
            tried = ", ".join(
                f"{t['candidate']} {t['forward_ms']:.2f}" if t["forward_ms"] else
                f"{t['candidate']} refused" for t in last["trials"])
            chosen = sorted(r["chosen"] for r in reports)
            lines.append(f"| {model} | {batch} | {', '.join(dict.fromkeys(chosen))} | "
                         f"{last['stored_ms']:.2f} | {tried} | {last['seconds']:.2f} |")
    return lines


def variant_lines(results: dict, table: dict) -> List[str]:
    """What the variant column is, and how it compares with the released exporter's package."""
    by_batch: Dict[str, List[float]] = {}
    for batches in table.values():
        for batch, row in batches.items():
            value = ratio(row.get("torchship.export .pt2, variant"),
                          row.get("torchship.export .pt2"))
            if value:
                by_batch.setdefault(batch, []).append(value)
    summary = "; ".join(f"batch {batch}: {geomean(values):.2f}x in geometric mean "
                        f"({min(values):.2f}x to {max(values):.2f}x)"
                        for batch, values in sorted(by_batch.items(), key=lambda kv: int(kv[0])))
    return [f"The column \"torchship.export .pt2, variant\" is a lever under trial, not what "
            f"torchship.export writes: {results['variant']}. Its time over the released "
            f"exporter's package, {summary}."]


def profile_lines(profiles: dict) -> List[str]:
    """Per profiled model: the recommended path's forward split into oneDNN primitives by kind
    and the time outside them, beside the fastest peer's latency."""
    lines = [f"`{profiles['command']}`: oneDNN's own timing of its primitives "
             "(`ONEDNN_VERBOSE=1`), per forward, from the difference between runs of "
             f"{2 * profiles['runs']} and {profiles['runs']} forwards; \"outside oneDNN\" is the "
             "latency less the primitives (inductor's generated kernels or ATen's operators, and "
             "the glue between them). Logging slows the primitives a little.", "",
             "| model | batch | runs as | latency ms | fastest peer ms | oneDNN primitives ms "
             "(by kind) | outside oneDNN ms |", "|---|---|---|---|---|---|---|"]
    for item in profiles["profiles"]:
        primitives = item["primitives_ms"]
        total = sum(primitives.values())
        kinds = ", ".join(f"{kind} {ms:.2f}" for kind, ms in primitives.items() if ms >= 0.05)
        outside = max(item["latency_ms"] - total, 0.0)
        lines.append(f"| {item['model']} | {item['batch']} | {item['runner']} | "
                     f"{item['latency_ms']:.2f} | {text(item['peer_ms'])} | {total:.2f} "
                     f"({kinds}) | {outside:.2f} |")
    return lines


def lever_lines(levers: dict) -> List[str]:
    """p50 ms of each compile variant beside the package torchship.export writes."""
    items = list(levers["levers"].values())
    variants = list(dict.fromkeys(v for item in items for v in item["p50_ms"]))
    lines = [f"`{levers['command']}`: each variant compiled from the same torch.export program "
             f"and timed by `torchship bench` at batch {items[0]['batch']} (best of "
             f"{levers['rounds']} interleaved rounds of {levers['runs']} runs; ms, and the ratio "
             "to torchship.export's package).", "",
             "| model | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for model, item in levers["levers"].items():
        base = item["p50_ms"].get("torchship.export")
        cells = []
        for variant in variants:
            ms = item["p50_ms"].get(variant)
            if ms is None:
                cells.append("fails")
            elif variant == "torchship.export" or not base:
                cells.append(f"{ms:.2f}")
            else:
                cells.append(f"{ms:.2f} ({ms / base:.2f}x)")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def openvino_precision(text: str) -> str:
    """OpenVINO's inference precision as the page writes it ("<Type: 'bfloat16'>": bf16)."""
    for name, short in (("bfloat16", "bf16"), ("float32", "fp32"), ("float16", "fp16"),
                        ("f32", "fp32"), ("bf16", "bf16")):
        if name in text:
            return short
    return text or "?"


def precision_lines(found: dict) -> List[str]:
    """Latency per precision beside OpenVINO's own precision, then the pretrained model's top-1
    agreement with fp32 on real photos."""
    v = found["versions"]
    lines = [f"Measured {found['date']} by `{found['command']}` ({found['seconds'] / 60:.0f} "
             f"min) on {found['cpu']} (AVX512_BF16: {'yes' if found['bf16_cpu'] else 'no'}), "
             f"{found['threads']} threads; torch {v['torch']}, OpenVINO {v['openvino']}. "
             "torchship's archives are `torchship.export(..., precision=...)`: bf16 runs the "
             "module under CPU autocast, int8 is FX post-training quantization (x86 engine), "
             "calibrated on random images (EfficientNet-Lite0: on photos other than the test "
             "photos). OpenVINO default is its own choice of precision (in brackets). A cell is "
             "the best round's median in ms, with the ratio to torchship's fp32 archive.", "",
             "| model | batch | torchship fp32 .pt | torchship bf16 .pt | torchship int8 .pt | "
             "OpenVINO fp32 | OpenVINO default | torchship's best reduced / OpenVINO default |",
             "|---|---|---|---|---|---|---|---|"]
    precision_of = {}
    for model, batches in found["results"].items():
        for cell in batches.values():
            for sample in cell["samples"].get("OpenVINO default", []):
                precision_of[model] = openvino_precision(sample.get("precision", ""))
    ratios = []
    for case in found["cases"]:
        model = case["id"]
        for batch, cell in found["results"][model].items():
            row = {runner: best_median(samples) for runner, samples in cell["samples"].items()}
            base = row.get("torchship fp32 .pt")

            def with_ratio(runner: str) -> str:
                ms = row.get(runner)
                if ms is not None:
                    return f"{ms:.2f}" if runner == "torchship fp32 .pt" or not base else \
                        f"{ms:.2f} ({ms / base:.2f}x)"
                if runner in cell["failures"]:
                    return "fails"
                exported = PRECISION_ARCHIVES.get(runner)
                return "did not export" if exported in case["failures"] else "—"
            reduced = [row[r] for r in ("torchship bf16 .pt", "torchship int8 .pt") if row.get(r)]
            versus = ratio(min(reduced) if reduced else None, row.get("OpenVINO default"))
            if versus:
                ratios.append(versus)
            default = row.get("OpenVINO default")
            lines.append(
                f"| {case['name']} | {batch} | {with_ratio('torchship fp32 .pt')} | "
                f"{with_ratio('torchship bf16 .pt')} | {with_ratio('torchship int8 .pt')} | "
                f"{with_ratio('OpenVINO fp32')} | "
                f"{text(default)} ({precision_of.get(model, '?')}) | {text(versus, 2, 'x')} |")
    lines += ["", f"Geometric mean of torchship's best reduced precision over OpenVINO's default: "
              f"{text(geomean(ratios), 2, 'x')} over {len(ratios)} cells."]
    for case in found["cases"]:
        for key, why in case["failures"].items():
            lines.append(f"- {case['id']}: {key} did not export: {why}")
    for model, item in found.get("accuracy", {}).items():
        photos = item["views"] // 12
        lines += ["", f"Top-1 agreement with torchship's fp32 archive, {model} (pretrained), on "
                  f"{item['views']} views ({photos} photos x 12 crops and mirrors) of "
                  "python3-skimage's photos, run by `torchship run` and by OpenVINO:", "",
                  "| runs as | top-1 agreement with fp32 |", "|---|---|"]
        for runner, agreement in item["agreement"].items():
            if runner == "torchship fp32 .pt":
                continue
            precision = item["precisions"].get(runner)
            label = f"{runner} ({openvino_precision(precision)})" if precision else runner
            lines.append(f"| {label} | {agreement:.1%} |")
    return lines


def static_batch_lines(found: dict) -> List[str]:
    """The package with its static batch-1 model against the same package without it, beside
    the peers of the same run."""
    with_, without = "torchship.export .pt2", "torchship.export .pt2 without static batch 1"
    v = found["versions"]
    lines = [f"Measured {found['date']} by `{found['command']}` ({found['seconds'] / 60:.0f} "
             f"min, of which {found['export_seconds'] / 60:.0f} exporting) on {found['cpu']}, "
             f"{found['threads']} threads; torch {v['torch']}, ONNX Runtime {v['onnxruntime']}, "
             f"OpenVINO {v['openvino']}. torchship.export now compiles the batch size 1 with "
             "every size fixed beside the dynamic batch, times both on the export's rows and "
             "keeps the static model when it ran under 97% of the dynamic one's time; C++ runs it "
             "for a batch of exactly 1 (`static_batches`; by default `(1,)`, so timed). "
             "\"Without\" is the package less that model: the dynamic model is the same compiled "
             "code (where the exporter left the static model out, both are the same package "
             "and the ratio shows the noise between processes). Best of "
             f"{found['rounds']} interleaved rounds, each runner a fresh process, {found['runs']} "
             "timed runs; ms.", "",
             "| model | batch | static batch 1 kept | ONNX Runtime | OpenVINO fp32 | without "
             "static batch 1 | as exported | as exported / without | as exported / fastest peer "
             "| package MB without → as exported | peak RSS MB without → as exported |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios: Dict[str, List[float]] = {"1": [], "8": []}
    peer_ratios: Dict[str, List[float]] = {"1": [], "8": []}
    for case in found["cases"]:
        name = case["name"] + (" (held out)" if case.get("held_out") and "held out" not in
                               case["name"] else "")
        for batch, cell in found["results"][case["id"]].items():
            row = {runner: best_median(samples) for runner, samples in cell["samples"].items()}
            peer = min((row[r] for r in ("ONNX Runtime", "OpenVINO fp32") if row.get(r)),
                       default=None)
            gain, lead = ratio(row.get(with_), row.get(without)), ratio(row.get(with_), peer)
            if gain:
                ratios.setdefault(batch, []).append(gain)
            if lead:
                peer_ratios.setdefault(batch, []).append(lead)
            size = case["bytes"]
            rss = {runner: min((x["peak_rss_mb"] for x in cell["samples"].get(runner, [])),
                               default=0) for runner in (without, with_)}
            lines.append(
                f"| {name} | {batch} | {'yes' if case.get('static_kept', True) else 'no'} | "
                f"{text(row.get('ONNX Runtime'))} | "
                f"{text(row.get('OpenVINO fp32'))} | {text(row.get(without))} | "
                f"{text(row.get(with_))} | {text(gain, 2, 'x')} | {text(lead, 2, 'x')} | "
                f"{size[without] / 1e6:.0f} → {size[with_] / 1e6:.0f} | "
                f"{rss[without]:.0f} → {rss[with_]:.0f} |")
    lines.append("")
    if os.path.exists(STATIC_ALWAYS_FILE):
        with open(STATIC_ALWAYS_FILE) as f:
            always = json.load(f)
        slower = []
        for case in always["cases"]:
            cell = always["results"][case["id"]]["1"]["samples"]
            gain = ratio(best_median(cell.get(with_, [])), best_median(cell.get(without, [])))
            if gain and gain > 1:
                slower.append(f"{case['name']} {gain:.2f}x")
        lines.append(f"A first run on {always['date']} ({always['cpu']}), with the static model "
                     "always kept, measured it slower than the dynamic one at batch 1 on "
                     f"{', '.join(slower) or 'no model'} "
                     "(bench/results/zoo-static-batch-always.json): hence the exporter's timing.")
        lines.append("")
    for batch in sorted(ratios, key=int):
        if ratios[batch]:
            lines.append(f"- batch {batch}: as exported / without "
                         f"{text(geomean(ratios[batch]), 2, 'x')} in geometric mean "
                         f"({min(ratios[batch]):.2f}x to {max(ratios[batch]):.2f}x); as exported "
                         "/ fastest peer "
                         f"{text(geomean(peer_ratios[batch]), 2, 'x')}.")
    return lines


def serve_lines(found: dict) -> List[str]:
    """Requests per second at many clients under the server against the in-process best."""
    lines = [f"Measured {found['date']} by `{found['command']}` on {found['cpu']}: "
             f"{found['clients']} clients (`torchship-load`, one image a request) for "
             f"{found['seconds']:g} s per cell after 2 s of warm-up, on the same {found['cpus']} "
             "CPUs as the server; the server batches requests (max_batch_size "
             f"{found['max_batch_size']}, {found['max_queue_delay_us'] / 1000:g} ms queue "
             "delay). In process: `torchship bench` on the same package at batch 1 and 8 "
             f"({found['runs']} runs), the better as images/s. Best of {found['rounds']} "
             "interleaved rounds.", "",
             "| model | server | protocol | requests/s | p50 ms | p99 ms | failed | "
             "in-process best images/s | served / in-process |",
             "|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for model, title in found["models"].items():
        best = max(rate for found_round in found["samples"]
                   for rate in found_round["in_process"][model].values())
        best_batch = max(((batch, rate) for found_round in found["samples"]
                          for batch, rate in found_round["in_process"][model].items()),
                         key=lambda item: item[1])[0]
        served_best = 0.0
        for server in found["samples"][0]["served"]:
            for protocol in ("http-binary", "grpc"):
                runs = [r["served"][server][f"{model}/{protocol}"] for r in found["samples"]]
                top = max(runs, key=lambda r: r["rps"])
                served_best = max(served_best, top["rps"])
                failed = sum(top["failures"].values())
                name = "HTTP, binary tensors" if protocol == "http-binary" else "gRPC"
                lines.append(f"| {title} | {server} | {name} | {top['rps']:.1f} | "
                             f"{top['p50_ms']:.1f} | {top['p99_ms']:.1f} | {failed} | "
                             f"{best:.1f} (batch {best_batch}) | {top['rps'] / best:.2f}x |")
        verdicts.append((title, served_best / best))
    lines += ["", "| goal | value | target | verdict |", "|---|---|---|---|"]
    for title, value in verdicts:
        lines.append(f"| {title}: best served throughput / best in-process | {value:.3f}x | "
                     f">= {SERVING_GOAL} | {'met' if value >= SERVING_GOAL else '**not met**'} |")
    return lines


def engines_lines(found: dict) -> List[str]:
    """Each model's throughput and tail latency served together with a model of the other
    engine, against served alone; the shares added."""
    lines = [f"Measured {found['date']} by `{found['command']}` on {found['cpu']}, "
             f"{found['cpus']} CPUs: one `torchship serve` per cell, one instance per model on "
             "all the CPUs' threads (the default), dynamic batching (max_batch_size "
             f"{found['max_batch_size']}); `torchship-load` clients, one image a request over "
             f"HTTP with binary tensors, {found['seconds']:g} s per cell. Alone: "
             f"{found['clients']} clients on one model in its own server; together: both models "
             f"in one server, {found['clients'] // 2} clients on each at once. Best of "
             f"{found['rounds']} interleaved rounds.", "",
             "| model | engine | alone requests/s | alone p99 ms | together requests/s | "
             "together p99 ms | share of alone |", "|---|---|---|---|---|---|---|"]
    total = 0.0
    for model, title in found["models"].items():
        alone = max((r[f"{model} alone"][model] for r in found["samples"]),
                    key=lambda run: run["rps"])
        together = max((r["together"][model] for r in found["samples"]),
                       key=lambda run: run["rps"])
        engine = "OpenVINO (.ov)" if model.endswith("-ov") else "TorchScript (.pt)"
        share = together["rps"] / alone["rps"]
        total += share
        lines.append(f"| {title} | {engine} | {alone['rps']:.1f} | {alone['p99_ms']:.1f} | "
                     f"{together['rps']:.1f} | {together['p99_ms']:.1f} | {share:.2f} |")
    verdict = "met" if total >= ENGINES_GOAL else "**not met**"
    lines += ["", "| goal | value | target | verdict |", "|---|---|---|---|",
              f"| shares of alone throughput, added | {total:.2f} | >= {ENGINES_GOAL} | "
              f"{verdict} |"]
    return lines


def ov_static_lines(found: dict) -> List[str]:
    """Per model and batch: the OpenVINO archive's dynamic IR against the same IR reshaped to
    the request's exact shape, and how many cells a static form would win."""
    v = found["versions"]
    lines = [f"Measured {found['date']} by `{found['command']}` on {found['cpu']}, "
             f"{found['threads']} threads (OpenVINO {v['openvino']}; best of {found['rounds']} "
             f"alternating rounds of {found['runs']} runs, median ms). Dynamic: the IR as the "
             "archive holds it (free batch and image sizes), compiled as the C++ backend "
             "compiles it; static: the same IR reshaped to the request's shape first.", "",
             "| model | batch | dynamic ms | static ms | static / dynamic |", "|---|---|---|---|---|"]
    ratios = []
    for model in found["models"].values():
        for batch, times in model["batches"].items():
            ratio = times["static"] / times["dynamic"]
            ratios.append(ratio)
            lines.append(f"| {model['name']} | {batch} | {times['dynamic']:.2f} | "
                         f"{times['static']:.2f} | {ratio:.2f}x |")
    if ratios:
        wins = sum(ratio < OV_STATIC_KEEP_BELOW for ratio in ratios)
        lines += ["", f"Static / dynamic, geometric mean: {geomean(ratios):.2f}x over "
                      f"{len(ratios)} cells; below {OV_STATIC_KEEP_BELOW} (the bar a static "
                      f"AOTInductor model must pass to stay in a package) in {wins}."]
    return lines


def measured_by(results: dict) -> str:
    """The opening of a run's paragraph: when, by what, where, with which versions."""
    v = results["versions"]
    return (f"Measured {results['date']} by `{results['command']}` on {results['cpu']}, "
            f"{results['threads']} threads for every runner (torch {v['torch']}, ONNX Runtime "
            f"{v['onnxruntime']}, OpenVINO {v['openvino']}; {results['rounds']} interleaved "
            "rounds, ")


def fastest_form(row: Dict[str, Optional[float]]) -> Optional[str]:
    timed = [(row[runner], runner) for runner in FORMS if row.get(runner)]
    return min(timed)[1] if timed else None


def forms_lines(results: dict) -> List[str]:
    """Per model and batch: torchship's three forms of one pipeline beside the peers, which form
    is fastest and by how much against each peer; bf16 against OpenVINO's default; then what
    each form costs to export and to ship."""
    table = cells(results)
    bf16 = results.get("bf16_cpu", False)
    lines = [measured_by(results) + "best round's median in ms). Every torchship column is "
             "`torchship bench` "
             "with no flags but the input (and `--precision bf16` for the bf16 one) on the "
             "archive `torchship.export` wrote in that format.", ""]
    header = ["model", "batch", "ONNX Runtime", "OpenVINO fp32"] + \
        ([BF16_PEER] if bf16 else []) + [FORMS[r][0] for r in FORMS] + \
        (["OpenVINO bf16"] if bf16 else []) + \
        ["fastest form", "/ ONNX Runtime", "/ OpenVINO fp32"] + \
        (["bf16 / OpenVINO default"] if bf16 else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    titles = {case["id"]: case["name"] for case in results["cases"]}
    fp32_ratios: List[float] = []
    bf16_ratios: List[float] = []
    for model, batches in table.items():
        for batch in sorted(batches, key=int):
            row = batches[batch]
            best = fastest_form(row)
            runners = ["ONNX Runtime", "OpenVINO fp32"] + ([BF16_PEER] if bf16 else []) + \
                list(FORMS) + ([BF16_FORM] if bf16 else [])
            values = [text(row.get(runner)) for runner in runners]
            values.append(FORMS[best][0] if best else "—")
            for peer in ("ONNX Runtime", "OpenVINO fp32"):
                values.append(text(ratio(row.get(best), row.get(peer)), suffix="x"))
            fastest = ratio(row.get(best), fastest_peer(row))
            if fastest:
                fp32_ratios.append(fastest)
            if bf16:
                value = ratio(row.get(BF16_FORM), row.get(BF16_PEER))
                values.append(text(value, suffix="x"))
                if value:
                    bf16_ratios.append(value)
            lines.append(f"| {titles.get(model, model)} | {batch} | " + " | ".join(values) + " |")
    lines += ["", f"Fastest torchship form / fastest fp32 peer, geometric mean: "
              f"{text(geomean(fp32_ratios), suffix='x')} over {len(fp32_ratios)} cells"
              + (f"; torchship's OpenVINO form in bf16 / OpenVINO's default: "
                 f"{text(geomean(bf16_ratios), suffix='x')}" if bf16_ratios else "") + ".", ""]
    lines += ["Export time (s) and archive size (MB) per form:", "",
              "| model | " + " | ".join(f"{FORMS[r][0]} s | MB" for r in FORMS) + " |",
              "|---|" + "---|---|" * len(FORMS)]
    for case in results["cases"]:
        cells_ = []
        for _, key in FORMS.values():
            seconds = case["seconds"].get(key)
            size = case.get("bytes", {}).get(key)
            cells_ += [text(seconds, 0) if key in case["files"] else "fails",
                       text(size / 1e6, 1) if size else "—"]
        lines.append(f"| {case['name']} | " + " | ".join(cells_) + " |")
    return lines


AUTO = "torchship.export auto"
AUTO_BF16 = "torchship.export auto, precision auto"
AUTO_GOAL_CELL, AUTO_GOAL_MEAN = 1.0, 0.9  # issue 34: against the fastest fp32 peer


def best_sample(samples: List[dict]) -> dict:
    """The best round's sample (lowest median), {} when none ran."""
    return min((s for s in samples if "p50_ms" in s), key=lambda s: s["p50_ms"], default={})


def chosen_engine(samples: List[dict]) -> str:
    """The form the load chose, from the best round's notes ("engine: openvino chosen, ...")."""
    for note in best_sample(samples).get("notes", []):
        if note.startswith("engine: ") and " left out" not in note:
            return note[len("engine: "):].split(",")[0].replace(" chosen", "")
    return "—"


ENGINE_FORMS = {"torchscript": "torchship.export .pt", "aoti": "torchship.export .pt2",
                "openvino": "torchship.export .ov"}  # engine names in the load's notes


def precision_kept(samples: List[dict]) -> Optional[bool]:
    """Whether the load kept bf16, from the best round's "precision: ..." note."""
    for note in best_sample(samples).get("notes", []):
        if note.startswith("precision: "):
            return note.startswith("precision: openvino bf16 kept")
    return None


def choice_text(results: dict, forms: Optional[dict]) -> str:
    """What the loads chose, counted, and each cell where the forms run (each form alone, same
    batch) timed another form fastest."""
    titles = {case["id"]: case["name"] for case in results["cases"]}
    forms_table = cells(forms) if forms else {}
    counts: Counter = Counter()
    other, bf16_kept, bf16_refused = [], [], []
    for model, batches in cells(results).items():
        for batch in sorted(batches, key=int):
            samples = results["results"][model][batch]["samples"]
            engine = chosen_engine(samples.get(AUTO, []))
            if engine == "—":  # the archive did not run at this batch
                continue
            counts[engine] += 1
            alone = forms_table.get(model, {}).get(batch, {})
            best = fastest_form(alone)
            if best and engine in ENGINE_FORMS and ENGINE_FORMS[engine] != best:
                mine = alone.get(ENGINE_FORMS[engine])
                other.append(f"{titles.get(model, model)} b{batch} ({engine}, "
                             f"{text(mine)} ms alone against {FORMS[best][0]}'s "
                             f"{text(alone[best])} ms)")
            kept = precision_kept(samples.get(AUTO_BF16, []))
            if kept is not None:
                (bf16_kept if kept else bf16_refused).append(f"{titles.get(model, model)} b{batch}")
    chosen = ", ".join(f"{engine} in {n}" for engine, n in counts.most_common())
    cells_count = sum(counts.values())
    sentence = f"What the loads chose: {chosen} of {cells_count} cells."
    if forms_table:
        sentence += (f" Against the forms run (each form alone at the same batch), the choice "
                     f"was the fastest form in {cells_count - len(other)} of {cells_count}"
                     + (f"; elsewhere: {'; '.join(other)}" if other else "") +
                     " (the two runs are separate processes at separate times: a few percent "
                     "between forms is within their noise).")
    if bf16_kept or bf16_refused:
        sentence += (f" With `--precision auto`, bf16 was kept in {len(bf16_kept)} of "
                     f"{len(bf16_kept) + len(bf16_refused)} cells"
                     + (f" (refused: {', '.join(bf16_refused)}, where the golden cases fell "
                        "outside bf16's tolerance)" if bf16_refused else "") + ".")
    return sentence + (" The choice costs the first load: it loads, checks and times every "
                       "form (the table below); a server records it once (config.json's "
                       "\"engine\").")


def auto_lines(results: dict, forms: Optional[dict]) -> List[str]:
    """The recommended archive of every form against the peers, per model and batch, with the
    engine each load chose and the goals' verdicts; then per model its export time, its size
    against the fastest single form's and its first load."""
    table = cells(results)
    bf16 = results.get("bf16_cpu", False)
    lines = [measured_by(results) + "best round's median in ms, each runner a fresh "
             "process). The torchship "
             "columns are `torchship bench` on the archive `torchship.export(format=\"auto\")` "
             "wrote, with no flags but the input (and `--precision auto` for the last): each "
             "load chose its engine on this machine.", ""]
    header = ["model", "batch", "ONNX Runtime", "OpenVINO fp32", "auto", "engine chosen",
              "/ fastest fp32 peer"] + \
        ([BF16_PEER, "auto, precision auto", "chosen", "/ OpenVINO default"] if bf16 else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    titles = {case["id"]: case["name"] for case in results["cases"]}
    fp32_ratios, bf16_ratios, missed, missed_bf16 = [], [], [], []
    for model, batches in table.items():
        for batch in sorted(batches, key=int):
            row, samples = batches[batch], results["results"][model][batch]["samples"]
            fastest = ratio(row.get(AUTO), fastest_peer(row))
            values = [text(row.get("ONNX Runtime")), text(row.get("OpenVINO fp32")),
                      text(row.get(AUTO)), chosen_engine(samples.get(AUTO, [])),
                      text(fastest, suffix="x")]
            if fastest:
                fp32_ratios.append(fastest)
                if fastest > AUTO_GOAL_CELL:
                    missed.append(f"{titles.get(model, model)} b{batch} ({fastest:.2f}x)")
            if bf16:
                value = ratio(row.get(AUTO_BF16), row.get(BF16_PEER))
                values += [text(row.get(BF16_PEER)), text(row.get(AUTO_BF16)),
                           chosen_engine(samples.get(AUTO_BF16, [])), text(value, suffix="x")]
                if value:
                    bf16_ratios.append(value)
                    if value > 1.0:
                        missed_bf16.append(f"{titles.get(model, model)} b{batch} ({value:.2f}x)")
            lines.append(f"| {titles.get(model, model)} | {batch} | " + " | ".join(values) + " |")
    mean = geomean(fp32_ratios)
    lines += ["", f"Goals: at most {AUTO_GOAL_CELL:.1f}x the fastest fp32 peer in every cell: "
              f"**{'met' if not missed else 'missed'}** (within it in "
              f"{len(fp32_ratios) - len(missed)} of {len(fp32_ratios)} cells"
              f"{'; over it: ' + ', '.join(missed) if missed else ''}); "
              f"at most {AUTO_GOAL_MEAN}x in geometric mean: "
              f"**{'met' if mean and mean <= AUTO_GOAL_MEAN else 'missed'}** "
              f"({text(mean, suffix='x')})."]
    if bf16_ratios:
        lines[-1] += (f" With bf16 allowed (`--precision auto`), at most 1.0x OpenVINO's default "
                      f"in every cell: **{'met' if not missed_bf16 else 'missed'}** (within it "
                      f"in {len(bf16_ratios) - len(missed_bf16)} of {len(bf16_ratios)} cells"
                      f"{'; over it: ' + ', '.join(missed_bf16) if missed_bf16 else ''}; "
                      f"geometric mean {text(geomean(bf16_ratios), suffix='x')}).")
    lines += ["", choice_text(results, forms), ""]
    lines += ["Per model: the export of every form, the archive against the single form "
              "that ran fastest at batch 1 in the forms run above, and the first load (all "
              "forms loaded, checked and timed) against that form's load:", "",
              "| model | export s | archive MB | fastest form MB | left out | first load ms "
              "| that form's load ms |", "|---|---|---|---|---|---|---|"]
    forms_table = cells(forms) if forms else {}
    for case in results["cases"]:
        key = "exported_auto"
        size = case.get("bytes", {}).get(key)
        best = fastest_form(forms_table.get(case["id"], {}).get("1", {}))
        form_case = next((c for c in (forms or {}).get("cases", []) if c["id"] == case["id"]),
                         {})
        best_size = form_case.get("bytes", {}).get(FORMS[best][1]) if best else None
        loads = [s.get("load_ms") for s in results["results"].get(case["id"], {}).get(
            "1", {}).get("samples", {}).get(AUTO, []) if s.get("load_ms")]
        form_loads = [s.get("load_ms") for s in (forms or {}).get("results", {}).get(
            case["id"], {}).get("1", {}).get("samples", {}).get(best, []) if s.get("load_ms")] \
            if best else []
        left_out = ", ".join(item["format"] for item in case.get("auto_left_out", [])) or "—"
        lines.append(
            f"| {case['name']} | "
            f"{text(case['seconds'].get(key), 0) if key in case['files'] else 'fails'} | "
            f"{text(size / 1e6, 1) if size else '—'} | "
            f"{text(best_size / 1e6, 1) if best_size else '—'} | {left_out} | "
            f"{text(min(loads), 0) if loads else '—'} | "
            f"{text(min(form_loads), 0) if form_loads else '—'} |")
    return lines


def kinds_text(ours: Dict[str, float], peer: Dict[str, float], top: int = 3) -> str:
    """The kinds of work where ours spends most beyond the peer: "convolution 5.3 vs 4.1"."""
    excess = sorted(set(ours) | set(peer), key=lambda k: peer.get(k, 0.0) - ours.get(k, 0.0))
    return ", ".join(f"{k} {ours.get(k, 0.0):.2f} vs {peer.get(k, 0.0):.2f}"
                     for k in excess[:top] if ours.get(k, 0.0) > peer.get(k, 0.0))


def auto_profile_lines(found: dict) -> List[str]:
    """Each missed cell's chosen engine against the peer it missed, by kind of work."""
    lines = [f"`{found['command']}` on {found['cpu']}, {found['threads']} threads: each "
             "runtime's own per-node timing (OpenVINO's PERF_COUNT, ONNX Runtime's session "
             "profile, oneDNN's verbose log for AOTInductor, whose other work is \"outside "
             "oneDNN\"), per forward, summed by kind of work. Profiling slows small nodes, so "
             "the sums exceed the latencies; compare the two sides of a row, not a row with "
             "the latency.", "",
             "| model | batch | goal | chosen | ms | peer | peer ms | profiled ms (ours / peer) "
             "| where ours spends more (ms, ours vs peer) |", "|---|---|---|---|---|---|---|---|---|"]
    for cell in found["cells"]:
        ours, peer = cell["engine_ms"], cell["peer_profile_ms"]
        goal = "bf16 allowed" if cell["runner"] == AUTO_BF16 else "fp32"
        lines.append(f"| {cell['model']} | {cell['batch']} | {goal} | {cell['engine']} | "
                     f"{cell['ms']:.2f} | {cell['peer']} | {cell['peer_ms']:.2f} | "
                     f"{sum(ours.values()):.2f} / {sum(peer.values()):.2f} | "
                     f"{kinds_text(ours, peer) or '—'} |")
    return lines


def failures(results: dict) -> List[str]:
    lines = []
    for case in results["cases"]:
        for key, why in case["failures"].items():
            lines.append(f"- {case['id']}: {key} did not export: {why}")
    for model, batches in results["results"].items():
        for batch, cell in batches.items():
            for runner, why in cell["failures"].items():
                lines.append(f"- {model} batch {batch}: {runner} failed: {why}")
    return lines


def section(results: dict) -> List[str]:
    table = cells(results)
    v = results["versions"]
    minutes = results["seconds"] / 60
    lines = [SECTION, "",
             f"Measured {results['date']} by `{results['command']}` ({minutes:.0f} min, of "
             f"which {results['export_seconds'] / 60:.0f} exporting) on {results['cpu']}, "
             f"{results['threads']} threads for every runner. torch {v['torch']}, torchvision "
             f"{v['torchvision']}; {v['torchship']}; ONNX Runtime {v['onnxruntime']}; "
             f"OpenVINO {v['openvino']}. {results['rounds']} interleaved rounds, each runner a "
             f"fresh process per round with {results['runs']} timed runs after two untimed "
             "ones; a cell is the best round's median in ms. Weights are random (seed 0) but "
             "for EfficientNet-Lite0's; models marked held out were not looked at while "
             "choosing torchship's levers. The fastest peer is the faster of ONNX Runtime and "
             "OpenVINO fp32; the recommended path is `torchship.export(..., format=\"aoti\")` "
             "(TorchScript where torch.export refuses the model). OpenVINO's default runs bf16 "
             "on this CPU, so it is a column of its own, not a peer of fp32.", ""]
    for note in results.get("notes", []):
        lines += [note, ""]
    if results.get("variant"):
        lines += variant_lines(results, table) + [""]
    batches = sorted({b for m in table.values() for b in m}, key=int)
    for batch in batches:
        lines += [f"### Batch {batch}", ""] + latency_table(results, table, batch) + [""]
    lines += ["### Goals", "", "| goal | value | target | verdict |", "|---|---|---|---|"]
    lines += [f"| {g} | {v} | {t} | {verdict} |" for g, v, t, verdict in goals(table)] + [""]
    lines += ["### What torchship's load-time optimizer chose (plain archives)", "",
              "Every candidate that reproduces the stored module's outputs on the first inputs "
              "is timed on them; the fastest is kept only when it beats the module as stored "
              "by 3%. A server records the choice in config.json (`\"optimization\"`), a "
              "command with `--optimization NAME`, and does not time again.", ""]
    lines += optimization_table(results) + [""]
    for path, title, render in (
            (PROFILE_FILE, "Where the time goes", profile_lines),
            (LEVERS_FILE, "AOTInductor's options, one at a time", lever_lines),
            (PRECISION_FILE, "bf16 and int8", precision_lines),
            (STATIC_BATCH_FILE, "A static batch-1 model inside the package (adopted)",
             static_batch_lines),
            (SERVE_FILE, "Served at 32 clients", serve_lines),
            (OV_STATIC_FILE, "OpenVINO: free sizes against the request's exact shape",
             ov_static_lines),
            (ENGINES_FILE, "Two engines in one server", engines_lines)):
        if os.path.exists(path):  # each benchmark's own results file, when it has run
            with open(path) as f:
                lines += [f"### {title}", ""] + render(json.load(f)) + [""]
    if os.path.exists(FORMS_FILE):
        with open(FORMS_FILE) as f:
            forms = json.load(f)
        lines += ["### torchship's three forms: TorchScript, AOTInductor, OpenVINO", ""] + \
            forms_lines(forms) + [""]
        found = failures(forms)
        if found:
            lines += ["What did not export or run in that run:", ""] + found + [""]
    if os.path.exists(AUTO_FILE):
        with open(AUTO_FILE) as f:
            auto = json.load(f)
        lines += ["### The archive of every form, the engine chosen where it runs "
                  "(the recommended path)", ""] + \
            auto_lines(auto, forms if os.path.exists(FORMS_FILE) else None) + [""]
        found = failures(auto)
        if found:
            lines += ["What did not export or run in that run:", ""] + found + [""]
    if os.path.exists(AUTO_PROFILE_FILE):
        with open(AUTO_PROFILE_FILE) as f:
            lines += ["### Where the archive of every form's missed cells spend their time", ""] \
                + auto_profile_lines(json.load(f)) + [""]
    found = failures(results)
    if found:
        lines += ["### What did not export or run", ""] + found + [""]
    return lines


def publish(path: str, results: dict) -> None:
    """Writes one zoo benchmark's results file, then renders the zoo section from them all."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    write_section()


def write_section() -> None:
    """The zoo section of docs/benchmarks.md, from every zoo results file there is."""
    if not os.path.exists(RESULTS_FILE):
        raise SystemExit(f"no {RESULTS_FILE}: run python -m bench zoo first")
    with open(RESULTS_FILE) as f:
        results = json.load(f)
    report.replace_section(report.REPORT, SECTION, section(results))


def main(argv: Optional[List[str]] = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    write_section()


if __name__ == "__main__":
    main()
