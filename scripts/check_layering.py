#!/usr/bin/env python3
"""Checks that the C++ library's layering holds: no file includes a header from a layer above
its own, public headers include only public headers, every source file has a header of its own
(or shares one for a reason stated here), the gRPC front includes nothing of JSON, and the
command-line tool (tools/) includes only public headers and the internal ones listed here.

    scripts/check_layering.py [--root DIR]

Exit 0 when the layering holds; 1 with one line per violation otherwise. Run by the test suite
(tests/python/test_layering.py); docs/architecture.md describes the layers.
"""
import argparse
import re
import sys
from pathlib import Path

# The library's layers in the order data flows through them: a file may include headers of its
# own layer and of layers before it, never after. Each is a folder under src/. The serving
# fronts are peers (neither includes the other); the server, which wires them, comes last.
LAYERS = [
    "core",
    "archive",
    "io",
    "platform",
    "backends",
    "model",
    "tasks",
    "serving",
    "serving/http",
    "serving/grpc",
    "serving/server",
]
PEERS = {"serving/http": 8, "serving/grpc": 8}  # same rank: neither may include the other

# Public headers (include/torchship/) with no source file of their own name: their layer.
PUBLIC_WITHOUT_SOURCE = {
    "signature.h": "backends",  # forward's types, which backends describe themselves with
    "optimization.h": "backends",  # what a backend's optimize() reports
    "opencv.h": "io",  # inline cv::Mat <-> tensor helpers for applications
    "torchship.h": None,  # the umbrella: everything public, included by applications only
}

# The library's internal headers the command-line tool (tools/) may include, and why: everything
# else it uses is the public API (include/torchship/).
CLI_INTERNAL_HEADERS = {
    "serving/server.h": "the server `torchship serve` starts (the torchship::serving library)",
    "core/text.h": "the library's text helpers (join, human_bytes, first_line) for tidy output",
    "platform/libtorch_warnings.h": "libtorch's warnings routed to the CLI's own stderr lines",
}

# Source files that share a header, and why.
SHARED_HEADERS = {
    "src/model/preprocessing.cpp": "Model's image inputs (model.h): one file per part of Model",
    "src/tasks/classification.cpp": "Model::classify and top_k (model.h): the task's helpers",
    "src/tasks/segmentation.cpp": "Model::segment (model.h): the task's helpers",
    "src/tasks/detection.cpp": "Model::detect and detections (model.h): the task's helpers",
    "src/backends/torchscript.cpp": "a backend: backends/backend.h declares every backend",
    "src/backends/aoti.cpp": "a backend: backends/backend.h declares every backend",
    "src/backends/openvino.cpp": "a backend: backends/backend.h declares every backend",
    "src/backends/package_worker_main.cpp":
        "serve_package_worker (runtime.h): the worker's side of package_worker.h",
    "src/platform/jemalloc_settings.cpp":
        "defines jemalloc's malloc_conf, which jemalloc declares and reads",
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
JSON_INCLUDE = re.compile(r'^\s*#\s*include\s+<nlohmann/', re.M)

# Layers that speak no JSON: the gRPC front carries protobuf messages only, so neither it nor any
# header it includes (followed through torchship's own headers) includes nlohmann's.
JSON_FREE = ["serving/grpc"]


def layer_of_source(relative: str):
    """The layer of a path under src/ ("src/serving/http/x.cpp" -> "serving/http")."""
    parts = Path(relative).parts[1:]  # without "src"
    if len(parts) < 2:
        return None  # src/pch.h and the like: no layer
    if parts[0] == "serving":
        if len(parts) >= 3 and parts[1] in ("http", "grpc"):
            return "serving/" + parts[1]
        if Path(parts[-1]).stem == "server":
            return "serving/server"
    return parts[0] if parts[0] in LAYERS else None


def rank(layer: str) -> int:
    return PEERS.get(layer, LAYERS.index(layer))


def json_problems(root: Path, sources: dict) -> list:
    """A file of a JSON_FREE layer that includes nlohmann's JSON, itself or through a header."""
    chains = {}

    def json_chain(path: Path):
        """The include chain from `path` to nlohmann's JSON, [] when there is none."""
        if path in chains:
            return chains[path] or []
        chains[path] = None  # a cycle finds nothing new
        text = path.read_text()
        found = ["<nlohmann/json>"] if JSON_INCLUDE.search(text) else []
        for included in INCLUDE.findall(text) if not found else []:
            for candidate in (root / "include" / included, root / "src" / included):
                if candidate.exists() and (chain := json_chain(candidate)):
                    found = [included] + chain
                    break
            if found:
                break
        chains[path] = found
        return found

    problems = []
    for relative, path in sorted(sources.items()):
        if layer_of_source(relative) in JSON_FREE and (chain := json_chain(path)):
            problems.append(f"{relative}: layer '{layer_of_source(relative)}' speaks no JSON, "
                            f"but includes it: {' -> '.join(chain)}")
    return problems


def tool_problems(root: Path) -> list:
    """An include of the command-line tool's that reaches into src/ past CLI_INTERNAL_HEADERS."""
    problems = []
    for path in sorted(p for p in (root / "tools").rglob("*") if p.suffix in (".h", ".cpp")):
        relative = path.relative_to(root).as_posix()
        text = path.read_text()
        for match in INCLUDE.finditer(text):
            included = match.group(1)
            internal = (root / "src" / included).exists() and not (path.parent / included).exists()
            if internal and included not in CLI_INTERNAL_HEADERS:
                line = text[: match.start()].count("\n") + 1
                problems.append(f"{relative}:{line}: #include \"{included}\": the command-line "
                                "tool includes a library-internal header; use the public API, or "
                                "list it in CLI_INTERNAL_HEADERS with the reason")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    root = parser.parse_args().root
    src, public = root / "src", root / "include" / "torchship"

    sources = {p.relative_to(root).as_posix(): p for p in src.rglob("*") if p.suffix in (".h", ".cpp")}
    layer_by_stem = {}
    for relative in sources:
        if relative.endswith(".cpp") and layer_of_source(relative):
            layer_by_stem.setdefault(Path(relative).stem, layer_of_source(relative))

    problems = []
    public_layer = {}
    for header in sorted(public.glob("*.h")):
        if header.name in PUBLIC_WITHOUT_SOURCE:
            public_layer[header.name] = PUBLIC_WITHOUT_SOURCE[header.name]
        elif header.stem in layer_by_stem:
            public_layer[header.name] = layer_by_stem[header.stem]
        else:
            problems.append(f"include/torchship/{header.name}: no source file src/*/{header.stem}.cpp "
                            "implements it (add it to PUBLIC_WITHOUT_SOURCE with its layer)")

    def target_layer(included: str, including: Path):
        """(layer, public) of an included header, or None when it is not torchship's."""
        if included.startswith("torchship/"):
            name = included[len("torchship/"):]
            if name in public_layer:
                return public_layer[name], True
            return None
        candidate = src / included
        if candidate.exists():
            return layer_of_source(candidate.relative_to(root).as_posix()), False
        return None  # a generated header (gRPC), or a system one written with quotes

    files = [(p.relative_to(root).as_posix(), p) for p in sorted(public.glob("*.h"))]
    files += sorted(sources.items())
    for relative, path in files:
        is_public = relative.startswith("include/")
        own = public_layer.get(path.name) if is_public else layer_of_source(relative)
        for line_number, included in (
            (path.read_text()[: m.start()].count("\n") + 1, m.group(1))
            for m in INCLUDE.finditer(path.read_text())
        ):
            found = target_layer(included, path)
            if found is None:
                continue
            layer, target_is_public = found
            where = f"{relative}:{line_number}: #include \"{included}\""
            if is_public and not target_is_public:
                problems.append(f"{where}: a public header includes an internal one")
                continue
            if own is None or layer is None or layer == own:
                continue
            if rank(layer) >= rank(own):
                problems.append(f"{where}: layer '{own}' includes from layer '{layer}', "
                                f"which comes {'beside' if rank(layer) == rank(own) else 'after'} it")

    problems += json_problems(root, sources)
    problems += tool_problems(root)

    for relative in sorted(sources):
        if not relative.endswith(".cpp") or layer_of_source(relative) is None:
            continue
        stem = Path(relative).stem
        if (root / Path(relative).with_suffix(".h")).exists() or (public / f"{stem}.h").exists():
            continue
        if relative not in SHARED_HEADERS:
            problems.append(f"{relative}: no header of its own ({Path(relative).with_suffix('.h').name}); "
                            "give it one, or state in SHARED_HEADERS which it shares and why")

    for problem in problems:
        print(problem)
    if problems:
        print(f"layering: {len(problems)} problem(s); the layers: {', '.join(LAYERS)}", file=sys.stderr)
        return 1
    print(f"layering holds: {len(files)} files, layers {' -> '.join(LAYERS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
