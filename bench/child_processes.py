"""How a benchmark starts its own modules in child processes (each measurement is a fresh
process, often another stack's interpreter): `python -m bench.MODULE`, with the checkout's root
(the bench package, the harness) and python/ (torchship) first on PYTHONPATH, so that the child
finds them from any working directory, with no path edits in any module."""

import os
from typing import Dict, List, Optional

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """This process's environment (plus `extra`) with the checkout's root and python/ first on
    PYTHONPATH."""
    env = {**os.environ, **(extra or {})}
    earlier = [path for path in env.get("PYTHONPATH", "").split(os.pathsep) if path]
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "python")] + earlier)
    return env


def module_command(python: str, module: str, *args: str) -> List[str]:
    """The command that runs bench/MODULE.py's main with `python`; run it with child_env()."""
    return [python, "-m", f"bench.{module}", *args]
