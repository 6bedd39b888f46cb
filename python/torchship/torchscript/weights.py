"""A weights update's proof on the TorchScript form (torchship.export_weights): the archive's
own module, its tensors replaced by the update's, run on the golden inputs."""

import io
from typing import Any, Dict, List, Tuple

import torch

from ..errors import ExportError
from ..weights_index import named_tensors
from .compat import torchscript_deprecations_silenced


def outputs_with_weights(module: torch.nn.Module, tensors: List[Tuple[str, torch.Tensor]],
                         cases: List[Tuple[Tuple[Any, ...], str]], data: bytes, origin: str,
                         manifest: Dict[str, Any]) -> Tuple[Dict[str, bytes], List[Any]]:
    """The form's archive (`data`, named `origin`) given `tensors`, on each golden case's
    arguments; no records of its own (the update's tensors are what it takes)."""
    with torchscript_deprecations_silenced():
        scripted = torch.jit.load(io.BytesIO(data), map_location="cpu")
        stored = dict(named_tensors(scripted))
        missing = [name for name, _ in tensors if name not in stored]
        if missing or len(stored) != len(tensors):
            raise ExportError(f"{origin} holds other tensors than the module "
                              f"({'no ' + repr(missing[0]) if missing else 'more of them'})")
        for name, tensor in tensors:
            stored[name].copy_(tensor)
        return {}, [scripted(*args) for args, _ in cases]
