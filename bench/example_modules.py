"""The examples' modules the benchmarks run (examples/article: pipelines, export;
examples/fashion_mnist: model, build), loaded from their files. The examples are scripts that
import each other by plain name, not packages on the path: each module is registered under that
plain name, so that the example's own imports get this same module."""

import importlib.util
import os
import sys
from types import ModuleType

EXAMPLES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "examples"))


def example_module(folder: str, name: str) -> ModuleType:
    """examples/FOLDER/NAME.py as the module NAME, imported once."""
    path = os.path.join(EXAMPLES, folder, name + ".py")
    loaded = sys.modules.get(name)
    if loaded is not None and os.path.abspath(getattr(loaded, "__file__", None) or "") == path:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
