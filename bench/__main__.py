"""python -m bench NAME [ARGS...]: runs bench/NAME.py's main(ARGS), from the repository root.
`python -m bench --help` lists the names; `python -m bench NAME --help` gives one's options."""

import importlib
import sys
from typing import Dict, List, Optional

# What each name runs, one line: the benchmarks write bench/results/ and render their pages.
BENCHMARKS = {
    "compare": "torchship against Python eager and ONNX Runtime, per PyTorch stack",
    "formats": "TorchScript vs AOTInductor vs eager vs ONNX Runtime on ResNet34",
    "zoo": "the benchmark zoo: 14 architectures against eager, ONNX Runtime, OpenVINO",
    "zoo_precision": "bf16 and int8 on the zoo, and top-1 agreement on photos",
    "zoo_static_batch": "the static batch-1 model inside the zoo's packages, as a lever",
    "zoo_levers": "AOTInductor's CPU options, one at a time, on zoo models",
    "zoo_profile": "where a zoo model's time goes: oneDNN's primitives",
    "zoo_auto_profile": "where the archive of every form's missed cells spend their time",
    "zoo_ov_static": "a static-shape OpenVINO form against the archive's dynamic one",
    "zoo_serve": "the zoo's packages under torchship serve at 32 clients",
    "serve_bench": "torchship serve against a FastAPI + PyTorch baseline",
    "serve_engines": "a TorchScript and an OpenVINO model in one server",
    "protocols": "KServe v2 over gRPC against HTTP binary and HTTP JSON",
    "soak": "one server under mixed traffic and reloads, for minutes or hours",
    "weights_swap": "weights updates against re-export + reload, and RSS per form",
    "new_versions": "a server's memory over 100 re-exported versions and 200 reloads, per form",
    "package_workers": "AOTInductor packages served in the server and in package workers",
}
# The pages again from the committed results, measuring nothing.
RENDERERS = {
    "report": "docs/benchmarks.md from the compare results",
    "zoo_report": "the \"Benchmark zoo\" section of docs/benchmarks.md",
    "readme_figures": "the README's benchmark summary",
}
# What the benchmarks start in child processes; each runs alone too.
HELPERS = {
    "cases": "compare's cases: models, archives, inputs, ONNX files",
    "zoo_models": "the zoo's models and the files each runner needs",
    "runners": "one measurement: eager, onnxruntime, openvino, profile or operators",
    "python_server": "the FastAPI + PyTorch serving baseline",
}
NAMES = {**BENCHMARKS, **RENDERERS, **HELPERS}
MISSING_TORCHSHIP = ("bench: torchship is not importable: run from the repository root with "
                     "python/ on PYTHONPATH (PYTHONPATH=python python -m bench ...)")


def usage() -> str:
    def table(title: str, names: Dict[str, str]) -> List[str]:
        return [title] + [f"  {name:<18}{what}" for name, what in names.items()]
    return "\n".join(["usage: python -m bench NAME [ARGS...]   (NAME --help: its options)", ""]
                     + table("benchmarks:", BENCHMARKS) + [""]
                     + table("renderers (the pages from bench/results/):", RENDERERS) + [""]
                     + table("helpers (started by the benchmarks):", HELPERS))


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in NAMES:
        print(f"bench: unknown name {name!r}: expected one of {', '.join(NAMES)}",
              file=sys.stderr)
        return 2
    # argparse names the program after sys.argv[0]; the scripts' own usage lines then read right.
    sys.argv = [f"python -m bench {name}", *rest]
    try:
        importlib.import_module(f"bench.{name}").main(rest)
    except ModuleNotFoundError as error:
        if error.name != "torchship":
            raise
        print(MISSING_TORCHSHIP, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
