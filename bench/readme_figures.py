"""The README's benchmark summary, rendered from the results files it quotes
(bench/results/compare-pypi.json, compare-debian.json, serve.json) between two markers, so that
a rerun cannot leave a stale figure behind.

    python -m bench readme_figures      rewrites the summary in README.md

tests/python/test_bench_report.py checks the committed README against this rendering.
"""

import argparse
import json
import os
import textwrap
from typing import Dict, List, Optional

from bench import report, serve_bench

README = os.path.join(report.ROOT, "README.md")
BEGIN = "<!-- figures: bench/readme_figures.py renders this paragraph -->"
END = "<!-- /figures -->"


def load(name: str) -> dict:
    with open(os.path.join(report.RESULTS, name)) as f:
        return json.load(f)


def goal_values(results: dict) -> Dict[str, float]:
    """bench/report.py's goals by their label, as measured."""
    return {label: value for label, value, _ in report.goals(results, report.case_rows(results))}


def summary(pypi: dict, debian: dict, serve: dict) -> str:
    new, old, served = goal_values(pypi), goal_values(debian), serve_bench.ratios(serve)
    return (
        f"In short, on this {pypi['cpus']}-CPU VM ({pypi['cpu']}) with PyPI's torch: a plain "
        f"`torch.jit.save` ResNet34 runs at "
        f"{new['ResNet34 plain archive fp32 / Python eager']:.2f}x Python eager's latency and "
        f"{new['ResNet34 plain archive fp32 / ONNX Runtime']:.2f}x ONNX Runtime's, the "
        f"article's classifier in bf16 at "
        f"{new['article classifier bf16 / Python eager fp32']:.2f}x and in int8 at "
        f"{new['article classifier int8 / Python eager fp32']:.2f}x eager's fp32; one photo "
        f"classified end to end takes "
        f"{new['one image end to end, wall time: CLI / Python']:.2f}x Python's wall time and "
        f"{new['one image end to end, peak RSS: CLI / Python']:.2f}x its peak RSS; the first "
        f"inference costs "
        f"{new['first inference after load / steady p50 (ResNet34 plain archive)']:.2f}x a "
        f"steady one. With Debian's torch 1.13 (oneDNN 2.6, no prepacked convolutions) the "
        f"same ResNet34 runs at {old['ResNet34 plain archive fp32 / Python eager']:.2f}x eager "
        f"and {old['ResNet34 plain archive fp32 / ONNX Runtime']:.2f}x ONNX Runtime. The server "
        f"reaches {served['throughput']:.1f}x the FastAPI baseline's throughput at "
        f"{serve['clients']} clients with {served['p99']:.2f}x its p99 latency.")


def render(readme: str) -> str:
    """`readme` with the text between the markers replaced by the summary."""
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    text = summary(load("compare-pypi.json"), load("compare-debian.json"), load("serve.json"))
    text = textwrap.fill(text, 100, break_long_words=False, break_on_hyphens=False)
    return readme[:start] + "\n" + text + "\n" + readme[end:]


def main(argv: Optional[List[str]] = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    with open(README) as f:
        rendered = render(f.read())
    with open(README, "w") as f:
        f.write(rendered)
    print(f"updated {README}")


if __name__ == "__main__":
    main()
