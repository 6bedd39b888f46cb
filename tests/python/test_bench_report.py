"""docs/benchmarks.md is rendered from the results files bench/compare.py writes: every verdict
in it follows from the measured numbers, and the page is the one those files give."""

import json
import os

import pytest

from bench import report


def results():
    found = []
    for stack in ("pypi", "debian"):
        path = os.path.join(report.RESULTS, f"compare-{stack}.json")
        if os.path.exists(path):
            with open(path) as f:
                found.append(json.load(f))
    return found


def test_every_verdict_follows_from_the_measured_ratio():
    if not results():
        pytest.skip("no results in bench/results")
    for measured in results():
        rows = {case_id: {name: report.summarize(samples) for name, samples in by.items()}
                for case_id, by in measured["samples"].items()}
        goals = report.goals(measured, rows)
        assert len(goals) == 7
        section = "\n".join(report.stack_section(measured))
        for label, value, limit in goals:
            verdict = "met" if value <= limit else "**not met**"
            assert f"| {label} | {value:.2f}x | <= {limit} | {verdict} |" in section


def test_the_committed_page_is_what_the_results_render():
    if not results():
        pytest.skip("no results in bench/results")
    with open(report.REPORT) as f:
        page = f.read()
    rendered = report.render(results())
    # The serving section is bench/serve_bench.py's: compare everything before it.
    cut = "## Serving under load"
    assert page.split(cut)[0] == rendered.split(cut)[0]


def zoo_results():
    from bench import zoo_report
    if not os.path.exists(zoo_report.RESULTS_FILE):
        return None
    with open(zoo_report.RESULTS_FILE) as f:
        return json.load(f)


def test_the_zoo_section_is_what_its_results_render():
    from bench import zoo_report
    measured = zoo_results()
    if measured is None:
        pytest.skip("no bench/results/zoo.json")
    with open(report.REPORT) as f:
        page = f.read()
    start = page.index(zoo_report.SECTION)
    end = page.find("\n## ", start + 1)
    committed = page[start:end if end >= 0 else len(page)].rstrip("\n")
    assert committed == "\n".join(zoo_report.section(measured)).rstrip("\n")


def test_every_zoo_verdict_follows_from_the_table():
    from bench import zoo_report
    measured = zoo_results()
    if measured is None:
        pytest.skip("no bench/results/zoo.json")
    table = zoo_report.cells(measured)
    ratios = []
    for model, batches in table.items():
        for batch, row in batches.items():
            chosen = zoo_report.recommended(row)
            peer = zoo_report.fastest_peer(row)
            if chosen and peer:
                ratios.append(row[chosen] / peer)
    goals = {goal: (value, verdict) for goal, value, _, verdict in zoo_report.goals(table)}
    within = sum(r <= 1.0 for r in ratios)
    value, verdict = goals["recommended path / fastest peer, per model and batch"]
    assert value == f"{within} of {len(ratios)} within"
    assert (verdict == "met") == (within == len(ratios))
    mean = zoo_report.geomean(ratios)
    value, verdict = goals["recommended path / fastest peer, geometric mean"]
    assert value == f"{mean:.2f}x" and (verdict == "met") == (mean <= 0.9)


def test_a_missed_cells_profile_names_where_ours_spends_more_largest_first():
    from bench import zoo_report
    ours = {"convolution": 5.0, "layout": 2.5, "matmul": 1.0, "pooling": 0.1}
    peer = {"convolution": 4.0, "layout": 0.5, "matmul": 1.5, "other": 0.3}
    assert zoo_report.kinds_text(ours, peer) == "layout 2.50 vs 0.50, convolution 5.00 vs 4.00, " \
        "pooling 0.10 vs 0.00"
    assert zoo_report.kinds_text(peer, peer) == ""


def test_the_choice_summary_counts_engines_and_names_cells_where_another_form_was_faster():
    from bench import zoo_report

    def sample(p50, *notes):
        return [{"p50_ms": p50, "notes": list(notes)}]

    auto = {"cases": [{"id": "m", "name": "Model"}], "results": {"m": {
        "1": {"samples": {zoo_report.AUTO: sample(2.0, "engine: aoti chosen, 2 ms ..."),
                          zoo_report.AUTO_BF16: sample(1.0, "precision: openvino bf16 kept: x")}},
        "8": {"samples": {zoo_report.AUTO: sample(9.0, "engine: openvino chosen, 9 ms ..."),
                          zoo_report.AUTO_BF16: sample(9.0, "precision: fp32: golden cases")}}}}}
    forms = {"cases": [], "results": {"m": {
        "1": {"samples": {"torchship.export .pt2": sample(4.33),
                          "torchship.export .ov": sample(2.68)}},
        "8": {"samples": {"torchship.export .pt2": sample(10.0),
                          "torchship.export .ov": sample(9.1)}}}}}
    text = zoo_report.choice_text(auto, forms)
    assert text.startswith("What the loads chose: aoti in 1, openvino in 1 of 2 cells. ")
    assert "the fastest form in 1 of 2; elsewhere: Model b1 (aoti, 4.33 ms alone against " \
        "OpenVINO's 2.68 ms)" in text
    assert "bf16 was kept in 1 of 2 cells (refused: Model b8, " in text


def test_every_runtimes_node_kinds_land_in_the_same_bins():
    from bench import zoo_auto_profile
    bins = {kind: zoo_auto_profile.bin_of(kind) for kind in (
        "Convolution", "GroupConvolution", "FusedConv", "Conv", "convolution (1x1)",
        "FullyConnected", "MatMul", "Gemm", "inner_product", "Eltwise", "Subgraph", "Add",
        "HardSigmoid", "MVN", "LayerNormalization", "ReduceMean", "GlobalAveragePool", "Reorder",
        "Transpose", "Concat", "ShuffleChannels", "Softmax")}
    assert bins == {
        "Convolution": "convolution", "GroupConvolution": "convolution",
        "FusedConv": "convolution", "Conv": "convolution", "convolution (1x1)": "convolution",
        "FullyConnected": "matmul", "MatMul": "matmul", "Gemm": "matmul",
        "inner_product": "matmul", "Eltwise": "elementwise", "Subgraph": "elementwise",
        "Add": "elementwise", "HardSigmoid": "elementwise", "MVN": "normalization",
        "LayerNormalization": "normalization", "ReduceMean": "pooling",
        "GlobalAveragePool": "pooling", "Reorder": "layout", "Transpose": "layout",
        "Concat": "layout", "ShuffleChannels": "layout", "Softmax": "other"}


def test_the_serving_section_is_what_its_results_render():
    from bench import serve_bench
    if not os.path.exists(serve_bench.RESULTS):
        pytest.skip("no bench/results/serve.json")
    with open(serve_bench.RESULTS) as f:
        measured = json.load(f)
    with open(report.REPORT) as f:
        page = f.read()
    start = page.index(serve_bench.SECTION)
    end = page.find("\n## ", start + 1)
    committed = page[start:end if end >= 0 else len(page)].rstrip("\n")
    assert committed == "\n".join(serve_bench.section_lines(measured)).rstrip("\n")


def test_the_formats_page_is_what_its_results_render():
    from bench import formats
    if not os.path.exists(formats.RESULTS):
        pytest.skip("no bench/results/formats.json")
    with open(formats.RESULTS) as f:
        measured = json.load(f)
    with open(formats.REPORT) as f:
        assert f.read() == formats.render(measured)


def test_the_readme_summary_is_what_its_results_render():
    from bench import readme_figures
    needed = ("compare-pypi.json", "compare-debian.json", "serve.json")
    if not all(os.path.exists(os.path.join(report.RESULTS, name)) for name in needed):
        pytest.skip("the README's results are not all in bench/results")
    with open(readme_figures.README) as f:
        readme = f.read()
    assert readme == readme_figures.render(readme)
