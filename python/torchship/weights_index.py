"""The weights index every archive records (torchship/weights_index.json): the module's tensors
(names, dtypes, shapes) and its structure (each submodule's class and settings, each class's
forward code), so that a weights update can be checked against the archive it is for without
the archive's compiled code. Its signature (a hash of both) is what the update carries and C++
compares."""

import hashlib
import inspect
import io
import json
import textwrap
import tokenize
from typing import Any, Dict, List, Optional, Tuple

import torch

INDEX_FILE = "torchship/weights_index.json"
INDEX_VERSION = 1


def named_tensors(module: torch.nn.Module) -> List[Tuple[str, torch.Tensor]]:
    """Every parameter and buffer (persistent or not) by its qualified name, each tensor once:
    what TorchScript keeps as attributes and AOTInductor, without freezing, as constants."""
    return list(module.named_parameters()) + list(module.named_buffers())


def _forward_code(cls: type) -> Optional[str]:
    """A hash of the class's forward as tokens (comments and layout do not count; the same on
    every Python version), or None where its source is not available (a class defined in C++ or
    at the prompt)."""
    forward = getattr(cls, "forward", None)
    try:
        source = textwrap.dedent(inspect.getsource(forward))
        skipped = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                   tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER)
        tokens = [token.string for token in tokenize.generate_tokens(io.StringIO(source).readline)
                  if token.type not in skipped]
        return hashlib.sha256("\x00".join(tokens).encode()).hexdigest()[:16]
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):
        return None


def structure(module: torch.nn.Module) -> List[str]:
    """One line per submodule (its class and extra_repr: a convolution's stride, an
    activation's kind) and one per class with Python code (its forward's hash)."""
    lines, classes = [], {}
    for name, submodule in module.named_modules():
        cls = type(submodule)
        lines.append(f"module {name or '(root)'}: {cls.__qualname__}({submodule.extra_repr()})")
        classes.setdefault(cls.__qualname__, cls)
    for qualname, cls in classes.items():
        code = _forward_code(cls)
        if code is not None and cls.__module__.split(".")[0] != "torch":
            lines.append(f"forward of {qualname}: code {code}")
    return lines


def weights_index(module: torch.nn.Module, precision: str = "fp32",
                  frozen: bool = False) -> Dict[str, Any]:
    """The index of `module` as exported. `frozen`: the form's compiled code holds its weights
    transformed (AOTInductor with freezing), so that they cannot be replaced."""
    tensors = [[name, str(tensor.dtype).replace("torch.", ""), list(tensor.shape)]
               for name, tensor in named_tensors(module)]
    lines = structure(module)
    signature = hashlib.sha256(json.dumps([tensors, lines]).encode()).hexdigest()
    return {"version": INDEX_VERSION, "signature": signature, "precision": precision,
            "frozen": frozen, "tensors": tensors, "structure": lines}


def index_file(module: torch.nn.Module, precision: str = "fp32",
               frozen: bool = False) -> Dict[str, bytes]:
    """The record the writers add beside the golden vectors."""
    return {INDEX_FILE: json.dumps(weights_index(module, precision, frozen)).encode()}


def first_difference(base: Dict[str, Any], new: Dict[str, Any]) -> Optional[str]:
    """The first way `new` differs from the archive's index `base`, in words; None when they
    describe the same tensors and structure."""
    for key in ("tensors", "structure"):
        old_items, new_items = base[key], new[key]
        for position, (old, now) in enumerate(zip(old_items, new_items)):
            if old != now:
                return _difference(key, position, old, now)
        if len(old_items) != len(new_items):
            common = min(len(old_items), len(new_items))
            longer, whose = (old_items, "the archive") if len(old_items) > common \
                else (new_items, "the module")
            return f"{whose} has {len(longer) - common} more {key}, the first " \
                   f"{_describe(key, longer[common])}"
    return None


def _difference(key: str, position: int, old: Any, now: Any) -> str:
    """"tensor 'fc.weight': the archive has float32 [4, 8], the module float32 [5, 8]", or
    "module conv: the archive has Conv2d(...), the module Conv2d(...)"."""
    if key == "tensors":
        if old[0] == now[0]:
            return f"tensor '{old[0]}': the archive has {old[1]} {list(old[2])}, the module " \
                   f"{now[1]} {list(now[2])}"
        return f"tensor {position}: the archive has {_describe(key, old)}, the module " \
               f"{_describe(key, now)}"
    old_name, old_value = old.split(": ", 1)
    new_name, new_value = now.split(": ", 1)
    if old_name == new_name:
        return f"{old_name}: the archive has {old_value}, the module {new_value}"
    return f"the archive has {old}, the module {now} (structure line {position})"


def _describe(key: str, item: Any) -> str:
    if key == "tensors":
        name, dtype, shape = item
        return f"'{name}' {dtype} {list(shape)}"
    return item
