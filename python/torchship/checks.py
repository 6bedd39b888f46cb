"""Checks that stop an export from silently lying (docs/pitfalls.md, "Export checks").

Each finding has a stable id. Findings of ids in `allow` are reported but do not stop the export.

- train-mode      submodules whose behaviour differs in training (dropout, batch norm) were in
                  training mode when handed in; the export used eval mode (a note, never fatal)
- tracer-warning  torch.jit.trace warned that the trace may not generalize
- frozen-branch   the trace computes something else than Python on inputs derived from the
                  example (other values, negated, zeros, other sizes on free dimensions)
- device-literal  the exported graph holds a fixed device or a tensor constant captured by
                  tracing: the archive would only run where it was exported
"""

import os
import re
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .errors import ExportError, Finding, first_line, warn
from .tree import first_mismatch

IDS = ("train-mode", "tracer-warning", "frozen-branch", "device-literal")


@dataclass
class Findings:
    items: List[Finding] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        self.items.append(finding)

    def blocking(self, allow: Iterable[str]) -> List[Finding]:
        allowed = set(allow)
        return [f for f in self.items if f.fatal and f.id not in allowed]


def check_allow(allow: Sequence[str]) -> None:
    """Refuses ids in `allow` that name no check."""
    unknown = sorted(set(allow) - set(IDS))
    if unknown:
        raise ExportError(f"allow: unknown check id(s) {', '.join(unknown)} "
                          f"(expected {', '.join(IDS)})")


def settle_findings(findings: Findings, allow: Sequence[str], module: nn.Module) -> None:
    """Refuses the export for findings not in `allow`; the rest become ExportWarnings, reported
    at the caller of torchship.export."""
    blocking = findings.blocking(allow)
    if blocking:
        raise ExportError(f"export of {type(module).__name__} refused by {len(blocking)} "
                          f"check(s) (pass allow=[...] with their ids to accept):\n" +
                          "\n".join(str(f) for f in blocking), blocking)
    for finding in findings.items:
        warn(str(finding))


_MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm,
                   nn.modules.instancenorm._InstanceNorm)


def train_mode(module: nn.Module) -> List[Finding]:
    """Submodules in training mode whose output depends on it (checked before eval())."""
    names = [name or type(module).__name__ for name, sub in module.named_modules()
             if sub.training and isinstance(sub, _MODE_DEPENDENT)]
    if not names:
        return []
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return [Finding("train-mode", f"{len(names)} submodule(s) were in training mode ({shown}); "
                    "the export switched them to eval mode, as inference needs",
                    "call model.eval() before exporting; a trace taken in training mode freezes "
                    "dropout masks and batch statistics", fatal=False)]


def trace_recording_warnings(trace: Callable[[], Any],
                             sizes_fixed: bool = False) -> Tuple[Any, List[Finding]]:
    """Runs `trace` and turns every TracerWarning into a finding located at the line of the
    caller's code that caused it (the innermost frame outside torch: torch's own files, where
    the warning is raised, tell a user nothing). A warning at an assertion (`torch._assert`,
    `assert`) is a check the trace cannot keep, not a branch it froze: with `sizes_fixed` (the
    manifest fixes every size but the batch's) it holds for every input allowed and is only
    reported."""
    recorded: List[Tuple[warnings.WarningMessage, Optional[traceback.FrameSummary]]] = []

    def record(message, category, filename, lineno, file=None, line=None):
        warning = warnings.WarningMessage(message, category, filename, lineno, file, line)
        recorded.append((warning, _caller_frame(traceback.extract_stack())))

    with warnings.catch_warnings():
        warnings.simplefilter("always", torch.jit.TracerWarning)
        warnings.showwarning = record
        result = trace()
    findings = []
    seen = set()
    for warning, caller in recorded:
        if not issubclass(warning.category, torch.jit.TracerWarning):
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
            continue
        location = (f"{caller.filename}:{caller.lineno}" if caller else
                    f"{warning.filename}:{warning.lineno}")
        if location in seen:
            continue
        seen.add(location)
        # torch's text goes on for two more sentences about what a constant means.
        message = first_line(str(warning.message), warning.category.__name__).split(". ")[0]
        findings.append(_tracer_finding(message,
                                        location, (caller.line or "").strip() if caller else "",
                                        sizes_fixed))
    return result, findings


_TORCH_FOLDER = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_TORCHSHIP_FOLDER = os.path.dirname(os.path.abspath(__file__)) + os.sep
_ASSERTION = re.compile(r"^(assert\b|torch\._assert\(|_assert\()")


def _caller_frame(stack: List[traceback.FrameSummary]) -> Optional[traceback.FrameSummary]:
    """The innermost frame of the caller's code: not torch's, not torchship's, not warnings'."""
    for frame in reversed(stack):
        path = os.path.abspath(frame.filename)
        if (path.startswith(_TORCH_FOLDER) or path.startswith(_TORCHSHIP_FOLDER)
                or path == os.path.abspath(warnings.__file__) or frame.filename.startswith("<")):
            continue
        return frame
    return None


def _tracer_finding(message: str, location: str, source: str, sizes_fixed: bool) -> Finding:
    shown = f"{message}: `{source}`" if source else message
    if source and _ASSERTION.match(source):
        if sizes_fixed:
            return Finding(
                "tracer-warning", f"{shown}: an assertion the trace cannot keep; it holds for "
                "every input the manifest allows (its sizes are fixed)",
                "nothing to do; to keep the check in the archive, script the module that holds "
                "it (method='hybrid')", location, fatal=False)
        return Finding(
            "tracer-warning", f"{shown}: an assertion the trace cannot keep, and the manifest "
            "leaves sizes free: the archive would run inputs the Python module refuses",
            "fix the input's size in the manifest (image_input(resize=...), or a shape without "
            "-1), or script the module that holds the assertion (method='hybrid')", location)
    return Finding(
        "tracer-warning", shown,
        "the trace records one run: make this code independent of tensor values, or script "
        "the module that holds it (method='script', or 'hybrid' with the rest traced)",
        location)


def _variants(value: Any, free_dims: Sequence[int], generator: torch.Generator) -> List[Tuple[str, Any]]:
    """Inputs derived from one example value, named for the message."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
        per_item = [_variants(v, free_dims, generator) for v in value]
        out = []
        for k in range(min(len(p) for p in per_item)):
            name = per_item[0][k][0]
            items = [p[k][1] for p in per_item]
            out.append((name, type(value)(items) if isinstance(value, tuple) else items))
        return out
    if not isinstance(value, torch.Tensor):
        return []
    t = value
    out: List[Tuple[str, Any]] = []
    if t.dtype == torch.bool:
        out.append(("other random values", torch.rand(t.shape, generator=generator) < 0.5))
        return out
    if t.dtype == torch.uint8:
        out.append(("other random values",
                    torch.randint(0, 256, t.shape, generator=generator, dtype=t.dtype)))
    elif t.is_floating_point():
        scale = float(t.float().std()) if t.numel() > 1 else 1.0
        scale = scale if scale > 0 else 1.0
        out.append(("other random values",
                    (torch.randn(t.shape, generator=generator) * scale * 2
                     + float(t.float().mean())).to(t.dtype)))
        out.append(("negated values", -t))
        out.append(("negative values",
                    (-(torch.randn(t.shape, generator=generator).abs() + 1) * scale).to(t.dtype)))
    else:
        out.append(("other random values",
                    torch.randint(-10, 11, t.shape, generator=generator, dtype=t.dtype)))
        out.append(("negated values", -t))
        out.append(("negative values",
                    -torch.randint(1, 11, t.shape, generator=generator, dtype=t.dtype)))
    out.append(("zeros", torch.zeros_like(t)))
    if free_dims and t.dim() > max(free_dims):
        shape = list(t.shape)
        for dim in free_dims:
            shape[dim] = shape[dim] + 17
        if t.is_floating_point():
            resized = torch.randn(shape, generator=generator).to(t.dtype)
        elif t.dtype == torch.uint8:
            resized = torch.randint(0, 256, shape, generator=generator, dtype=t.dtype)
        else:
            resized = torch.randint(-10, 11, shape, generator=generator, dtype=t.dtype)
        out.append((f"other sizes on free dimensions {list(free_dims)}", resized))
    return out


def frozen_branches(eager: nn.Module, exported: torch.jit.ScriptModule, args: Tuple[Any, ...],
                    free_dims: Dict[int, Sequence[int]], rtol: float,
                    atol: Optional[float]) -> List[Finding]:
    """Compares the export with the eager module on inputs derived from the example inputs."""
    generator = torch.Generator().manual_seed(0)
    for index, value in enumerate(args):
        for name, variant in _variants(value, free_dims.get(index, ()), generator):
            trial = tuple(variant if i == index else a for i, a in enumerate(args))
            with torch.no_grad():
                try:
                    expected = eager(*trial)
                except Exception:
                    continue  # the Python module itself rejects this input: nothing to compare
                try:
                    actual = exported(*trial)
                except Exception as error:
                    first = str(error).strip().splitlines()[-1]
                    return [_frozen(index, name, f"the export fails where Python runs: {first}")]
            difference = first_mismatch(expected, actual, rtol, atol)
            if difference:
                return [_frozen(index, name, difference)]
    return []


def _frozen(index: int, variant: str, detail: str) -> Finding:
    return Finding("frozen-branch",
                   f"on input {index} with {variant}, the trace computes something else than "
                   f"the Python module ({detail}): tracing froze data-dependent control flow or "
                   "shapes",
                   "script the code with the branch (method='script'), or script the wrapper and "
                   "trace only the network (method='hybrid', trace=[...])")


def device_literals(exported: torch.jit.ScriptModule) -> List[Finding]:
    """Devices and captured non-scalar tensor constants in the saved graph."""
    findings = []
    devices = set()
    tensors = []
    for node in _all_nodes(exported):
        if node.kind() != "prim::Constant" or not node.outputsSize():
            continue
        output = node.output()
        kind = output.type().kind()
        if kind == "DeviceObjType":
            devices.add(str(output.toIValue()))
        elif kind == "TensorType":
            value = output.toIValue()
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                tensors.append((value, node.sourceRange()))
    if devices:
        findings.append(Finding(
            "device-literal",
            f"the exported graph names device(s) {', '.join(sorted(devices))}: tensors built in "
            "forward under tracing keep the device they were traced on, so the archive fails or "
            "silently moves data on another device",
            "make constants module state (nn.Parameter or register_buffer) so they move with "
            "module.to(device), or build them from an input's device in scripted code"))
    if tensors:
        shapes = ", ".join(str(list(t.shape)) for t, _ in tensors[:3])
        findings.append(Finding(
            "device-literal",
            f"tracing captured {len(tensors)} tensor constant(s) (shapes {shapes}) into the "
            "graph; they stay on the export device",
            "make them module state (register_buffer) instead of tensors built inside forward"))
    return findings


def _all_nodes(module: torch.jit.ScriptModule):
    seen = set()
    stack = [module]
    while stack:
        current = stack.pop()
        for name in ("forward",):
            method = getattr(current, name, None)
            graph = getattr(method, "graph", None)
            if graph is not None and id(graph) not in seen:
                seen.add(id(graph))
                yield from _walk(graph.nodes())
        stack.extend(current.children())


def _walk(nodes):
    for node in nodes:
        yield node
        for block in node.blocks():
            yield from _walk(block.nodes())
