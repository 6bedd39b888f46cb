"""The doctor: explains why torch.jit.script rejected a module, with the matching entry of a
catalogue of TorchScript pitfalls (docs/pitfalls.md), the offending source line and the fix;
and, likewise, why torch.export rejected one (EXPORT_CATALOGUE, diagnose_export).

    python3 -m torchship doctor path/to/file.py:ClassName
"""

import importlib.util
import os
import re
import sys
import traceback
from dataclasses import dataclass
from typing import Any, List, Optional, Pattern, Tuple

import torch

from .errors import first_line


@dataclass(frozen=True)
class Pitfall:
    id: str
    title: str
    pattern: Pattern[str]  # matched against the TorchScript error message
    fix: str


def _p(regex: str) -> Pattern[str]:
    return re.compile(regex, re.S)


# Order matters: the first entry whose pattern matches explains the error.
CATALOGUE: List[Pitfall] = [
    Pitfall("none-then-tensor", "a variable first assigned None, later a Tensor",
            _p(r"previously had type NoneType but is now being assigned"),
            "declare the variable's type up front: `y: Optional[Tensor] = None`, and refine it "
            "with `if y is not None:` before using it as a Tensor"),
    Pitfall("int-float-branches", "a variable that is an int in one branch and a float in another",
            _p(r"is set to type (int|float) in the true branch and type (float|int) in the false"),
            "write float literals with a dot in every branch (`y = 0.` instead of `y = 0`), or "
            "annotate the variable (`y: float = 0.`)"),
    Pitfall("empty-container", "an empty list or dict without a type annotation",
            _p(r"(Type variable 't' previously matched to type Tensor is matched to type"
               r"|Dict\[str, Tensor\].*previously matched to type Tensor)"),
            "an empty `[]` is List[Tensor] and an empty `{}` Dict[str, Tensor] to TorchScript; "
            "annotate it: `sizes: List[int] = []`, `d: Dict[str, int] = {}` (from typing import "
            "List, Dict)"),
    Pitfall("optional-unrefined", "an Optional value used before it is checked for None",
            _p(r"found type 'Optional\["),
            "refine the Optional first: `if bias is not None: x = x + bias` (assign it to a local "
            "variable first when it is an attribute: `b = self.bias`)"),
    Pitfall("tensor-constructor", "the torch.Tensor(...) constructor",
            _p(r"Unknown builtin op: aten::Tensor\b"),
            "use torch.tensor(data, dtype=..., device=x.device) (lower case), or torch.empty / "
            "torch.zeros for shapes"),
    Pitfall("undefined-name", "a name not visible where the code is compiled",
            _p(r"undefined value (\w+)"),
            "import the module or define the name in the Python module that holds the scripted "
            "code (TorchScript resolves names through that module's globals); or pass the value "
            "in as an argument or attribute"),
    Pitfall("global-variable", "a global Python variable used inside forward",
            _p(r"python value of type '\w+' cannot be used as a value"),
            "make it an attribute set in __init__ (`self.scale = [1.0, 2.0]`, or a buffer for "
            "tensors: `self.register_buffer('scale', torch.tensor(...))`), or mark a constant "
            "with `torch.jit.Final[...]`"),
    Pitfall("tuple-slice", "a tuple slice whose bounds are not constants",
            _p(r"tuple slice indices must be integer constants"),
            "declare the bound a constant: `n: torch.jit.Final[int]` as a class annotation with "
            "`self.n = 2` in __init__, or use a list (`List[Tensor]`) instead of a tuple"),
    Pitfall("clamp-tensor", "clamp(min=tensor) with a tensor bound",
            _p(r"argument 'm(in|ax)' but instead found type 'Tensor'"),
            "pass a number: `x.clamp(min=float(t.item()))`, or use torch.maximum(x, t)"),
    Pitfall("masked-scalar", "masked assignment of a Python scalar",
            _p(r"(index_put_|aten::_index_put).*Expected a value of type 'Tensor' for argument 'values'"),
            "assign a tensor on the same device: `x[mask] = torch.tensor(0., device=x.device)`, "
            "or use `x.masked_fill_(mask, 0.)`"),
    Pitfall("untyped-argument", "a non-Tensor argument without a type annotation",
            _p(r"Expected a value of type 'Tensor \(inferred\)' for argument '(\w+)'"),
            "TorchScript treats unannotated arguments as Tensor: annotate the others "
            "(`def forward(self, x: Tensor, k: int)`)"),
    Pitfall("train-mode", "a module traced or scripted in training mode",
            _p(r"(Dropout|BatchNorm).*(training|train)"),
            "call model.eval() before tracing (torchship.export does it for you)"),
]


# torch.export's common failures (torch >= 2.1). Matched against the exception's class names
# and message.
EXPORT_CATALOGUE: List[Pitfall] = [
    Pitfall("export-data-dependent", "control flow or a size that depends on tensor values",
            _p(r"GuardOnDataDependentSymNode|Could not guard on data-dependent expression"
               r"|Could not extract specialized integer from data-dependent expression"),
            "torch.export records one graph for all inputs, so it cannot branch on a tensor's "
            "values: write the branch as torch.cond(pred, true_fn, false_fn, (x,)), compute both "
            "sides and select with torch.where, or move the branch out of forward (into the "
            "caller); for a size taken from a value (.item()), bound it with torch._check(...)"),
    Pitfall("export-unsupported", "a Python construct torch.export cannot trace",
            _p(r"torch\._dynamo\.exc\.Unsupported|Dynamo does not know how to"
               r"|is not supported for tensor subclasses|Unsupported method call"
               r"|Failed to trace builtin operator"),
            "forward may only compute on tensors: move file and console I/O, logging, numpy "
            "(.numpy(), np.*) and other non-torch libraries out of forward, or replace them by "
            "torch operations (torch.from_numpy(x.numpy() * 2) -> x * 2)"),
    Pitfall("export-constraints", "a dynamic dimension the code constrains",
            _p(r"Constraints violated"),
            "the code only works for some sizes of a dimension declared dynamic (a reshape, a "
            "branch on the size): declare the Dim the way torch suggests (below), or make the "
            "code size-independent"),
]


@dataclass
class Diagnosis:
    pitfall: Optional[Pitfall]
    location: Optional[str]  # "file.py:12"
    source_line: Optional[str]
    message: str  # the error's first line (torchship.errors.first_line)
    tool: str = "TorchScript"  # who rejected the code
    suggestion: Optional[str] = None  # what the error itself suggests (torch.export's Dim fixes)

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        if self.pitfall is None:
            text = f"{where}{self.tool} rejected this code: {self.message}\n" \
                   "  no catalogue entry matches; see docs/pitfalls.md"
        else:
            text = f"{where}[{self.pitfall.id}] {self.pitfall.title}\n" \
                   f"  fix: {self.pitfall.fix}"
        if self.suggestion:
            text += "\n  suggested by torch.export:\n" + "\n".join(
                f"    {line.strip()}" for line in self.suggestion.splitlines())
        if self.source_line:
            text += f"\n  code: {self.source_line.strip()}"
        return text


_LOCATION = re.compile(r'File "([^"]+)", line (\d+)')


def _offending_line(message: str) -> Optional[str]:
    """The source line TorchScript marks with `~~~ <--- HERE` (the line above the marker)."""
    lines = message.splitlines()
    for i, line in enumerate(lines):
        if "<--- HERE" in line and i > 0:
            return lines[i - 1]
    return None


def diagnose(error: BaseException) -> Diagnosis:
    message = str(error)
    first = first_line(message, type(error).__name__)
    locations = _LOCATION.findall(message)
    # The user's code is the last location that is not serialized TorchScript code.
    user = [(f, n) for f, n in locations if not f.startswith("code/")]
    location = f"{user[-1][0]}:{user[-1][1]}" if user else None
    for pitfall in CATALOGUE:
        if pitfall.pattern.search(message):
            return Diagnosis(pitfall, location, _offending_line(message), first)
    return Diagnosis(None, location, _offending_line(message), first)


def _user_frame(error: BaseException) -> Tuple[Optional[str], Optional[str]]:
    """The innermost traceback frame outside torch and torchship ("file.py:12", its line):
    torch.export runs forward in Python, so the user's line is on the traceback; dynamo's
    errors (strict mode) name it in their message instead."""
    # With the separator: torchvision's files are not torch's.
    internal = (os.path.dirname(torch.__file__) + os.sep,
                os.path.dirname(os.path.abspath(__file__)) + os.sep)
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if not os.path.abspath(frame.filename).startswith(internal):
            return f"{frame.filename}:{frame.lineno}", frame.line
    return None, None


def _message_frame(message: str) -> Tuple[Optional[str], Optional[str]]:
    """The last `File "...", line N` of the message outside torch, and the code line after it."""
    internal = os.path.dirname(torch.__file__) + os.sep
    lines = message.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        found = _LOCATION.search(lines[i])
        if found and not os.path.abspath(found.group(1)).startswith(internal):
            code = lines[i + 1] if i + 1 < len(lines) else None
            return f"{found.group(1)}:{found.group(2)}", code
    return None, None


def user_line(stack_trace: str) -> Tuple[Optional[str], Optional[str]]:
    """The user's frame in a formatted stack ("file.py:12", its code line): the innermost one
    outside torch, as torch.export records a node's in its meta["stack_trace"]."""
    return _message_frame(stack_trace)


def diagnose_export(error: BaseException) -> Diagnosis:
    """Explains a torch.export failure with EXPORT_CATALOGUE."""
    message = str(error)
    names = " ".join(f"{c.__module__}.{c.__qualname__}" for c in type(error).__mro__)
    first = first_line(message, type(error).__name__)
    location, code = _message_frame(message)
    if location is None:
        location, code = _user_frame(error)
    suggestion = None
    fixes = re.search(r"Suggested fixes:\n((?:[ \t]+\S.*\n?)+)", message)
    if fixes:
        suggestion = fixes.group(1).rstrip()
    for pitfall in EXPORT_CATALOGUE:
        if pitfall.pattern.search(names + "\n" + message):
            return Diagnosis(pitfall, location, code, first, "torch.export", suggestion)
    return Diagnosis(None, location, code, first, "torch.export", suggestion)


def check_export(module: torch.nn.Module, args: Tuple[Any, ...], dynamic_shapes: Any = None,
                 strict: bool = False) -> Optional[Diagnosis]:
    """Exports `module` with torch.export (non-strict, as torchship does, unless `strict`);
    returns None when it exports, else the diagnosis."""
    try:
        with torch.no_grad():
            torch.export.export(module.eval(), args, dynamic_shapes=dynamic_shapes,
                                strict=strict)
    except Exception as error:
        return diagnose_export(error)
    return None


def check_module(module: torch.nn.Module) -> Optional[Diagnosis]:
    """Scripts `module`; returns None when it compiles, else the diagnosis."""
    try:
        torch.jit.script(module)
    except Exception as error:  # TorchScript reports through RuntimeError and friends
        return diagnose(error)
    return None


def _load_class(target: str):
    path, _, name = target.rpartition(":")
    if not path or not name:
        raise SystemExit(f"torchship doctor: expected path/to/file.py:ClassName, got {target!r}")
    if not os.path.exists(path):
        raise SystemExit(f"torchship doctor: no such file {path}")
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0],
                                                  path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, name):
        raise SystemExit(f"torchship doctor: {path} defines no {name}")
    return getattr(module, name)


def main(argv: List[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m torchship doctor path/to/file.py:ClassName", file=sys.stderr)
        return 2
    cls = _load_class(argv[0])
    try:
        instance = cls()
    except TypeError as error:
        print(f"torchship doctor: cannot build {argv[0]} without arguments ({error})",
              file=sys.stderr)
        return 2
    diagnosis = check_module(instance)
    if diagnosis is None:
        print(f"{argv[0]}: scripts cleanly")
        return 0
    print(diagnosis)
    return 1
