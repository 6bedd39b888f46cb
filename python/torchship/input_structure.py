"""What torch.export fixes of forward's arguments besides free tensor sizes (containers, their
lengths, non-tensor values): the arguments' names, the refusal of golden cases whose structure
differs from the example's, and how the manifest's export.arguments records each argument."""

import inspect
from typing import Any, Dict, List, Tuple

import torch

from .errors import ExportError
from .manifest import Manifest


def argument_names(module: torch.nn.Module, count: int) -> List[str]:
    """The names of forward's first `count` parameters ("input_<i>" where it has fewer)."""
    try:
        parameters = list(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        parameters = []
    return [parameters[i] if i < len(parameters) else f"input_{i}" for i in range(count)]


def has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(has_tensor(item) for item in value)
    if isinstance(value, dict):
        return any(has_tensor(item) for item in value.values())
    return False


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor {list(value.shape)}"
    if isinstance(value, (list, tuple)):
        shapes = sorted({str(list(item.shape)) for item in value
                         if isinstance(item, torch.Tensor)})
        return f"a {type(value).__name__} of {len(value)} ({', '.join(shapes)})"
    return f"{type(value).__name__} {value!r}"


def _structure(value: Any) -> Any:
    """What torch.export specializes on besides free tensor sizes: containers, their lengths,
    non-tensor values."""
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dim(), value.dtype)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_structure(item) for item in value))
    if isinstance(value, dict):
        return ("dict", tuple((key, _structure(item)) for key, item in value.items()))
    return ("constant", value)


def refuse_varying_inputs(names: List[str], cases: List[Tuple[Any, ...]],
                          manifest: Manifest) -> None:
    """torch.export specializes a list's length, each element's shape (no Dim reaches into a
    list of images that vary per call) and every non-tensor value: say so before compiling."""
    for index, name in enumerate(names):
        values = [args[index] for args in cases if index < len(args)]
        first = values[0]
        spec = manifest.inputs[index] if index < len(manifest.inputs) else None
        is_list = isinstance(first, (list, tuple)) and has_tensor(first)
        varies = any(_structure(value) != _structure(first) for value in values[1:])
        if is_list and (varies or (spec is not None and spec.image is not None)):
            other = next((v for v in values[1:] if _structure(v) != _structure(first)), None)
            seen = f" (the example passes {_describe(first)}" + \
                (f", a golden case {_describe(other)})" if other is not None else ")")
            raise ExportError(
                f"format='aoti': input {name!r} is a list of images whose length and element "
                f"shapes vary per call{seen}; torch.export cannot export it: it specializes a "
                "list's length and its elements' shapes, so the .pt2 would accept only lists "
                "like the example. Export the pipeline's batch form instead: one B x H x W x C "
                "tensor (layout BHWC, manifest batch_dim=True), whose batch size is dynamic")
        if varies and not has_tensor(first):
            other = next(v for v in values[1:] if _structure(v) != _structure(first))
            raise ExportError(
                f"format='aoti': input {name!r} is not a tensor: torch.export bakes its value "
                f"({first!r}) into the package, but a golden case passes {other!r}; pass it as a "
                "tensor, or keep it constant")
        if varies:
            raise ExportError(
                f"format='aoti': input {name!r} changes structure between golden cases "
                f"({_describe(first)} vs another); torch.export specializes containers, their "
                "lengths and non-tensor values: one .pt2 serves one structure")


def argument_record(name: str, value: Any) -> Dict[str, Any]:
    """How the package takes a forward argument: a tensor, a container of tensors (flattened,
    its structure fixed), or a constant torch.export baked in (its value, when JSON has one)."""
    if isinstance(value, torch.Tensor):
        return {"name": name, "kind": "tensor"}
    if has_tensor(value):
        return {"name": name, "kind": "tensors"}
    argument = {"name": name, "kind": "constant"}
    if value is None or isinstance(value, (bool, int, float, str)):
        argument["value"] = value
    return argument
