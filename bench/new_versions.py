"""A server's memory over a model's life: new versions that arrive as whole re-exports of a
retrained model (new bytes each), and unload/load cycles of one file, per form.

The demo's Fashion-MNIST pipeline, its network initialized from another seed for each version
(what a retraining gives: the same graph, other weights), exported as a TorchScript archive
(.pt), as an AOTInductor package with swappable weights (.pt2, export(swappable_weights=True):
its library holds code only) and, for contrast, as the default AOTInductor package (frozen
weights: compiled into the library). `torchship serve --model-control-mode explicit` takes each
new version as an operator would (the new version folder in, the old one out, one load request),
then answers one request, checked against the Python module of that version. RSS, threads and
the in-memory library files are read after cycle 20 (once settled) and at the end. The frozen
package is also served with `--package-workers frozen`: each version in a worker process of its
own, ended with the version; its RSS is the server's and the workers' together.

    python -m bench new_versions [--versions 100] [--frozen-versions 20] [--cycles 200]
                                 [--forms pt,pt2 swappable,pt2 frozen,pt2 frozen in workers]

Results: bench/results/new-versions.json, and a table on stdout for docs/serving.md.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

import torchship
from bench.example_modules import example_module
from harness.server_process import Server

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("TORCHSHIP_BUILD", os.path.join(ROOT, "build"))
RESULTS = os.path.join(ROOT, "bench", "results", "new-versions.json")
EXPORT_FOLDER = ""  # where EXPORTS are kept, for the run
SETTLED = 20  # glibc's arenas appear over the first cycles (docs/serving.md)
IMAGES = np.random.default_rng(0).integers(0, 256, (1, 28, 28, 1), dtype=np.uint8)
FORMS = {  # name: (file suffix, export keywords, server options)
    "pt": (".pt", {"method": "trace"}, ()),
    "pt2 swappable": (".pt2", {"format": "aoti", "swappable_weights": True,
                               "static_batches": ()}, ()),
    "pt2 frozen": (".pt2", {"format": "aoti", "static_batches": ()}, ()),
    "pt2 frozen in workers": (".pt2", {"format": "aoti", "static_batches": ()},
                              ("--package-workers", "frozen")),
}
EXPORTS: Dict[tuple, tuple] = {}  # (suffix, keywords, seed) -> (file, logits): forms share them


def pipeline(seed: int) -> torch.nn.Module:
    model = example_module("fashion_mnist", "model")
    torch.manual_seed(seed)
    return model.FashionPipeline(model.FashionNet()).eval()


def export_version(form: str, seed: int, path: str) -> np.ndarray:
    """Version `seed` of the pipeline exported to `path` (a copy of an export made before for
    another form with the same keywords); returns its Python logits."""
    key = (FORMS[form][0], json.dumps(FORMS[form][1], sort_keys=True), seed)
    if key in EXPORTS:
        shutil.copy(EXPORTS[key][0], path)
        return EXPORTS[key][1]
    EXPORTS[key] = (os.path.join(EXPORT_FOLDER, f"{len(EXPORTS)}{FORMS[form][0]}"),
                    export_new_version(form, seed, path))
    shutil.copy(path, EXPORTS[key][0])
    return EXPORTS[key][1]


def export_new_version(form: str, seed: int, path: str) -> np.ndarray:
    manifest = torchship.Manifest(inputs=[torchship.tensor_spec("images", "UINT8",
                                                                [-1, 28, 28, 1])],
                                  batch_dim=True)
    module = pipeline(seed)
    example = torch.from_numpy(np.repeat(IMAGES, 2, axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torchship.export(module, (example,), path, manifest=manifest, **FORMS[form][1])
    with torch.no_grad():
        return module(torch.from_numpy(IMAGES)).numpy()


def sample(server: Server) -> Dict[str, int]:
    """RSS of the server and its package workers, the server's threads and library files."""
    return {"rss_mb": server.total_rss_kb() // 1024, "threads": server.threads(),
            "library_files": server.library_files(), "workers": len(server.workers())}


def serve_cycles(form: str, repository: str, cycles: int,
                 step: Callable[[object, int], None]) -> dict:
    """Runs `step(client, cycle)` for cycles 1..N against a server of `repository`; the samples
    after cycle 20 (or halfway, for fewer than 40) and the last."""
    settled = min(SETTLED, cycles // 2)
    server = Server(os.path.join(BUILD, "bin", "torchship"), repository,
                    "--model-control-mode", "explicit", "--load-model", "net", *FORMS[form][2])
    samples = {}
    try:
        for cycle in range(1, cycles + 1):
            client = server.connect()
            step(client, cycle)
            client.close()
            if cycle in (settled, cycles):
                samples[cycle] = sample(server)
            if sys.stderr.isatty():
                print(f"\r  cycle {cycle}/{cycles}", end="", file=sys.stderr, flush=True)
    finally:
        server.terminate()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    first, last = samples[settled], samples[cycles]
    return {"cycles": cycles, "settled_after": settled, "settled": first, "at_end": last,
            "rss_growth": round(last["rss_mb"] / first["rss_mb"] - 1, 4)}


def check_answer(client, expected: np.ndarray, what: str) -> None:
    answer = client.infer("net", {"images": IMAGES})
    assert answer.status == 200, (what, answer.body)
    got = next(iter(answer.outputs().values()))
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-4), (what, got, expected)


def new_versions(form: str, versions: int, folder: str) -> dict:
    """`versions` re-exports, each replacing the one before."""
    suffix = FORMS[form][0]
    files, logits = {}, {}
    for seed in range(1, versions + 2):
        files[seed] = os.path.join(folder, f"v{seed}{suffix}")
        logits[seed] = export_version(form, seed, files[seed])
        if sys.stderr.isatty():
            print(f"\r  exported {seed}/{versions + 1}", end="", file=sys.stderr, flush=True)
    repository = os.path.join(folder, "repository")
    os.makedirs(os.path.join(repository, "net", "1"))
    shutil.copy(files[1], os.path.join(repository, "net", "1", "model" + suffix))

    def step(client, cycle: int) -> None:
        version = cycle + 1
        staging = os.path.join(repository, "net", f".staging{version}")
        os.makedirs(staging)
        shutil.move(files[version], os.path.join(staging, "model" + suffix))
        os.rename(staging, os.path.join(repository, "net", str(version)))
        shutil.rmtree(os.path.join(repository, "net", str(version - 1)))
        loaded = client.request("POST", "/v2/repository/models/net/load")
        assert loaded.status == 200, loaded.body
        check_answer(client, logits[version], f"version {version}")

    return serve_cycles(form, repository, versions, step)


def unload_load(form: str, cycles: int, folder: str) -> dict:
    """One version unloaded and loaded again `cycles` times."""
    suffix = FORMS[form][0]
    repository = os.path.join(folder, "repository")
    os.makedirs(os.path.join(repository, "net", "1"))
    expected = export_version(form, 1, os.path.join(repository, "net", "1", "model" + suffix))

    def step(client, cycle: int) -> None:
        assert client.request("POST", "/v2/repository/models/net/unload").status == 200
        loaded = client.request("POST", "/v2/repository/models/net/load")
        assert loaded.status == 200, loaded.body
        check_answer(client, expected, f"cycle {cycle}")

    return serve_cycles(form, repository, cycles, step)


def row(form: str, what: str, result: dict) -> str:
    first, last = result["settled"], result["at_end"]
    return (f"| {result['cycles']} {what}, `{form}` | {result['settled_after']}: "
            f"{first['rss_mb']} -> {last['rss_mb']} MB "
            f"({result['rss_growth'] * 100:+.1f}%) | {first['threads']} -> {last['threads']} | "
            f"{first['library_files']} -> {last['library_files']} | "
            f"{first.get('workers', 0)} -> {last.get('workers', 0)} |")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--frozen-versions", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--forms", default=",".join(FORMS),
                        help="which to measure, of: " + ", ".join(FORMS))
    args = parser.parse_args(argv)
    forms = args.forms.split(",")
    for form in forms:
        if form not in FORMS:
            parser.error(f"--forms: '{form}' is none of {', '.join(FORMS)}")
    results, rows = {}, []
    if os.path.exists(RESULTS):  # the forms not measured now keep their figures
        with open(RESULTS) as f:
            results = json.load(f)
    global EXPORT_FOLDER
    exports = tempfile.TemporaryDirectory()
    EXPORT_FOLDER = exports.name
    for form in forms:
        frozen = form.startswith("pt2 frozen")
        count = args.frozen_versions if frozen else args.versions
        for what, run, n in (("new versions", new_versions, count),
                             ("unload/load cycles", unload_load, args.cycles)):
            if frozen and run is unload_load:
                continue  # the same bytes: the swappable package's figures hold
            print(f"{form}: {n} {what}", file=sys.stderr)
            with tempfile.TemporaryDirectory() as folder:
                results[f"{form}, {what}"] = result = run(form, n, folder)
            rows.append(row(form, what, result))
            print(rows[-1], flush=True)
            os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
            with open(RESULTS, "w") as f:  # after each row: a long run keeps what it measured
                json.dump(results, f, indent=2)
    print("\n| what | cycle: RSS then -> at the end | threads | library files | workers |\n"
          "|---|---|---|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
