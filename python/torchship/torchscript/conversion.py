"""A module to TorchScript by one of the three methods: "trace", "script", or "hybrid" (script
the module, with the submodules named in `trace`, or those that do not script, traced)."""

import copy
from typing import Any, List, Optional, Sequence, Tuple

import torch

from ..checks import Findings, trace_recording_warnings
from ..doctor import diagnose
from ..errors import ExportError
from .submodules import capture_inputs, find_submodule

METHODS = ("trace", "script", "hybrid")


def convert(module: torch.nn.Module, args: Tuple[Any, ...], method: str,
            trace: Optional[Sequence[str]], findings: Findings, notes: List[str],
            sizes_fixed: bool = False) -> torch.jit.ScriptModule:
    """`module` converted by `method` on the example arguments `args`; the tracer's warnings
    become findings (at an assertion, not blocking when `sizes_fixed`: see
    checks.trace_recording_warnings), and what hybrid decided by itself a note."""
    if method == "trace":
        traced, warned = trace_recording_warnings(
            lambda: torch.jit.trace(module, args, check_trace=False, strict=False), sizes_fixed)
        for finding in warned:
            findings.add(finding)
        return traced
    if method == "script":
        return _script(module)
    module = copy.deepcopy(module)  # tracing replaces submodules: leave the caller's intact
    if trace is None:
        # Script what scripts; trace the children that do not, then script the whole.
        try:
            return torch.jit.script(module)
        except Exception:
            trace = _children_that_do_not_script(module)
            if not trace:
                return _script(module)  # the wrapper itself fails: explain it
            notes.append("hybrid: scripting failed in submodule(s) " + ", ".join(trace) +
                         "; traced them and scripted the rest")
    _trace_submodules(module, trace, args, findings, sizes_fixed)
    return _script(module)


def _script(module: torch.nn.Module) -> torch.jit.ScriptModule:
    try:
        return torch.jit.script(module)
    except Exception as error:
        raise ExportError(f"torch.jit.script cannot compile {type(module).__name__}:\n"
                          f"{diagnose(error)}") from error


def _children_that_do_not_script(module: torch.nn.Module) -> List[str]:
    """Direct children that do not script on their own: the ones hybrid export traces."""
    failing = []
    for name, child in module.named_children():
        if isinstance(child, torch.jit.ScriptModule):
            continue
        try:
            torch.jit.script(child)
        except Exception:
            failing.append(name)
    return failing


def _trace_submodules(module: torch.nn.Module, names: Sequence[str], args: Tuple[Any, ...],
                      findings: Findings, sizes_fixed: bool) -> None:
    """Replaces each named submodule by its trace, on the inputs it sees when `module` runs on
    `args`."""
    captured = capture_inputs(module, names, args)
    for name in names:
        if name not in captured:
            raise ExportError(f"hybrid export: submodule {name!r} never ran on the example inputs, "
                              "so it cannot be traced")
        parent, leaf = find_submodule(module, name)
        sub = getattr(parent, leaf)
        traced, warned = trace_recording_warnings(
            lambda: torch.jit.trace(sub, captured[name], check_trace=False), sizes_fixed)
        for finding in warned:
            findings.add(finding)
        setattr(parent, leaf, traced)
