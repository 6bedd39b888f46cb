"""docs/benchmarks.md is rendered from the results files bench/compare.py writes: every verdict
in it follows from the measured numbers, and the page is the one those files give."""

import json
import os
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import report  # noqa: E402


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
