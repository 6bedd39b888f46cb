"""AOTInductor's static batch sizes (the rule and the sizes: ..static_batches): with every size
known, inductor prepacks convolution weights for oneDNN and picks kernels for those sizes, which
it does not do for a dynamic batch (MobileNetV3 at batch 1: 0.62x the dynamic package's time).
Here: each size's program, compiled into the package beside the dynamic model, and its check
against Python."""

from typing import Any, Dict, List, Optional, Tuple

import torch

from ..doctor import diagnose_export
from ..errors import ExportError, first_line
from ..static_batches import example_rows, keep_static, model_name
from ..verification import compare_cases
from .pt2_package import remove_models


def static_program(module: torch.nn.Module, example: Tuple[Any, ...], dynamic_shapes: Any,
                   batched: List[int], size: int) -> Any:
    """The program exported with the batch dimension fixed at `size` (other free sizes stay
    dynamic), on the example's rows."""
    args = example_rows(example, batched, size)
    shapes = None
    if dynamic_shapes is not None:
        shapes = tuple(
            ({dim: d for dim, d in dims.items() if dim != 0} or None)
            if index in batched and dims else dims
            for index, dims in enumerate(dynamic_shapes))
    try:
        return torch.export.export(module, args, dynamic_shapes=shapes)
    except Exception as error:
        raise ExportError(f"torch.export cannot export {type(module).__name__} at the static "
                          f"batch size {size} (static_batches=() leaves it out):\n"
                          f"{diagnose_export(error)}") from error


def check_static_models(module: torch.nn.Module, path: str, dynamic: Any,
                        programs: Dict[int, Any], rtol: float, atol: Optional[float],
                        timed: bool, notes: List[str]) -> List[int]:
    """Each static model against the Python module on the rows it was exported with, then timed
    against the `dynamic` model on them (keep_static); those left out are removed from the
    package. Returns the sizes kept."""
    from torch._inductor.package import load_package
    kept, dropped = [], []
    for size, program in programs.items():
        name = model_name(size)
        args, _ = program.example_inputs
        expected = module(*args)
        try:
            static = load_package(path, name)
            actual = static(*args)
        except Exception as error:
            raise ExportError(f"the package's model {name} fails on the example's rows: "
                              f"{first_line(str(error), type(error).__name__)}") from error
        _, mismatches = compare_cases([expected], [actual], rtol, atol, f"compiled {name}")
        if mismatches[0][1]:
            raise ExportError(f"the package's model {name} computes something else than the "
                              f"Python module ({mismatches[0][1]})")
        keep = keep_static("aoti", size, static, dynamic, args, timed, notes)
        (kept if keep else dropped).append(size)
    if dropped:
        remove_models(path, [model_name(size) for size in dropped])
    return kept
