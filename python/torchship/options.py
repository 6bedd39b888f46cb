"""What the caller of torchship.export asks for, as one typed object that travels from the
validation (torchship.export) to the writer of the format (torchship.torchscript,
torchship.aoti). torchship.export's docstring says what each option means."""

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

from .manifest import Manifest


@dataclass(frozen=True)
class ExportOptions:
    """torchship.export's keyword arguments. A writer receives them validated, with rtol and
    manifest (and, for TorchScript, method) filled in with their defaults; static_batches=None
    stays None: the default sizes, each kept only where it is faster."""

    method: Optional[str] = None
    manifest: Optional[Manifest] = None
    trace: Optional[Sequence[str]] = None
    golden_inputs: Sequence[Any] = ()
    allow: Sequence[str] = ()
    rtol: Optional[float] = None
    atol: Optional[float] = None
    precision: str = "fp32"
    calibration: Sequence[Any] = ()
    quantize: str = ""
    format: str = "torchscript"
    cpu_target: str = "native"
    static_batches: Optional[Sequence[int]] = None
    swappable_weights: bool = False


def as_args(inputs: Any) -> Tuple[Any, ...]:
    """forward's arguments as a tuple: a tuple is the arguments, any other value the only one."""
    return inputs if isinstance(inputs, tuple) else (inputs,)
