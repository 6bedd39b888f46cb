"""What differs between the torch versions torchship exports with (Debian's 1.13, PyPI's 2.x).

TorchScript is deprecated since torch 2.9 (the documentation) and its Python entry points warn
on every call since 2.10/2.11 (`torch.jit.trace`, `script`, `save`, `load`; FutureWarning or
DeprecationWarning). A torch may go further and refuse it (a proposal for 2.14 turns the warnings
into errors unless an environment variable is set before `import torch`). Neither is assumed
from the version number: `torchscript_support()` tries it once.
"""

import contextlib
import functools
import re
import warnings
from typing import Iterator, NamedTuple, Optional

import torch

from ..errors import first_line

# The deprecation messages of torch.jit's entry points ("`torch.jit.trace` is deprecated. ...").
_DEPRECATION = r"`torch\.jit\.\w+` is (deprecated|not supported)"


class TorchScriptSupport(NamedTuple):
    available: bool
    deprecation: Optional[str]  # what torch says when TorchScript works but is deprecated
    refusal: Optional[str]  # what torch says when it refuses TorchScript


@functools.lru_cache(maxsize=None)
def torchscript_support() -> TorchScriptSupport:
    """Whether this torch writes TorchScript, found by scripting and tracing a one-liner."""
    def double(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.jit.script(double)
            torch.jit.trace(double, (torch.ones(1),), check_trace=False)
        except Exception as error:  # a torch that turned the deprecation into an error
            return TorchScriptSupport(False, None, first_line(str(error)))
    messages = [str(w.message) for w in caught if re.match(_DEPRECATION, str(w.message))]
    return TorchScriptSupport(True, first_line(messages[0]) if messages else None, None)


@contextlib.contextmanager
def torchscript_deprecations_silenced() -> Iterator[None]:
    """Drops torch.jit's per-call deprecation warnings (export reports the deprecation once);
    every other warning passes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION)
        yield


def deprecation_note(support: TorchScriptSupport) -> Optional[str]:
    if support.deprecation is None:
        return None
    return (f"torch {torch.__version__} deprecates TorchScript; this TorchScript archive still "
            "loads in libtorch and torchship; PyTorch's successor for C++ deployment is "
            "torch.export + AOTInductor (.pt2)")


def refusal_message(support: TorchScriptSupport) -> str:
    return (f"torch {torch.__version__} refuses TorchScript (\"{support.refusal}\"): a TorchScript "
            "archive needs a torch that still writes it (an earlier release, or the opt-out that "
            "message names), or PyTorch's successor, torch.export + AOTInductor (.pt2)")
