"""The benchmarks and side-by-side comparisons: results in bench/results/, rendered into
docs/benchmarks.md, docs/benchmarks-formats.md and the README. One entry point, from the
repository root:

    python -m bench --help              the benchmarks, the renderers and the helpers, by name
    python -m bench NAME [ARGS...]      one of them (bench/NAME.py's main); NAME --help: options

Each module imports the harness (harness/: `torchship serve` and a KServe v2 client), torchship
(python/ on PYTHONPATH, where a module needs it in process) and its siblings as `bench.NAME`;
never tests/ (tests/python/test_python_layering.py holds that rule). Child processes, often
another stack's interpreter, run `python -m bench.NAME` with the checkout on their PYTHONPATH
(bench/child_processes.py).
"""
