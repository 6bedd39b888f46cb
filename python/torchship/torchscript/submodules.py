"""Submodules named by their dotted path ("backbone.layer1"): where one sits in the module tree,
and the inputs each sees when the whole module runs (hybrid export traces them on those; int8
export quantizes one, calibrated on those)."""

from typing import Any, Dict, Sequence, Tuple

import torch

from ..errors import ExportError


def find_submodule(root: torch.nn.Module, dotted: str) -> Tuple[torch.nn.Module, str]:
    """The module holding the submodule `dotted`, and its attribute name there."""
    parent = root
    *path, leaf = dotted.split(".")
    for name in path:
        parent = getattr(parent, name)
    if not isinstance(getattr(parent, leaf, None), torch.nn.Module):
        raise ExportError(f"hybrid export: {type(root).__name__} has no submodule {dotted!r}")
    return parent, leaf


def capture_inputs(module: torch.nn.Module, names: Sequence[str],
                   args: Tuple[Any, ...]) -> Dict[str, Tuple[Any, ...]]:
    """The inputs each named submodule sees when `module` runs on `args`."""
    captured: Dict[str, Tuple[Any, ...]] = {}
    hooks = []
    for name in names:
        parent, leaf = find_submodule(module, name)

        def remember(_mod, inputs, name=name):
            captured.setdefault(name, inputs)

        hooks.append(getattr(parent, leaf).register_forward_pre_hook(remember))
    try:
        with torch.no_grad():
            module(*args)
    finally:
        for hook in hooks:
            hook.remove()
    return captured
