"""Static batch sizes: with every size known, inductor prepacks convolution weights for oneDNN and
picks kernels for those sizes, which it does not do for a dynamic batch (MobileNetV3 at batch
1: 0.62x the dynamic package's time). A package with a dynamic batch also holds a model
compiled for each of these sizes; C++ runs it for a request of exactly that size. Here: which
sizes, their programs, and each one's check against Python and timing against the dynamic
model."""

import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ..doctor import diagnose_export
from ..dynamic_dims import BATCH_MAX
from ..errors import ExportError, first_line
from ..manifest import Manifest
from .pt2_package import remove_models
from ..verification import compare_cases

DEFAULT_STATIC_BATCHES = (1,)
KEEP_BELOW = 0.97  # by default a static model stays only below 97% of the dynamic one's time


def check_static_batches(sizes: Optional[Sequence[int]], manifest: Manifest) -> None:
    """Refuses static_batches that are not batch sizes, or given without a batch dimension."""
    if sizes is None:
        return
    sizes = list(sizes)
    wrong = [size for size in sizes
             if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= BATCH_MAX]
    if wrong:
        raise ExportError(f"static_batches: expected batch sizes from 1 to {BATCH_MAX}, got "
                          f"{wrong[0]!r}")
    if sizes and not manifest.batch_dim:
        raise ExportError("static_batches needs a batch dimension: pass manifest=Manifest(..., "
                          "batch_dim=True)")


def static_sizes(sizes: Optional[Sequence[int]], manifest: Manifest) -> List[int]:
    """The batch sizes to compile (static_batches checked): the default's without sizes."""
    if sizes is None:
        return list(DEFAULT_STATIC_BATCHES) if manifest.batch_dim else []
    return sorted(set(sizes))


def model_name(size: int) -> str:
    """The package's name for the model compiled for batch `size`."""
    return f"batch_{size}"


def _rows(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """`size` rows of `tensor`'s batch, cycling through its rows when it has fewer."""
    index = torch.arange(size) % tensor.shape[0]
    return tensor.index_select(0, index.to(tensor.device)).contiguous()


def static_program(module: torch.nn.Module, example: Tuple[Any, ...], dynamic_shapes: Any,
                   batched: List[int], size: int) -> Any:
    """The program exported with the batch dimension fixed at `size` (other free sizes stay
    dynamic), on the example's rows."""
    args = tuple(_rows(value, size) if index in batched else value
                 for index, value in enumerate(example))
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


def _best_ms(model: Any, args: Tuple[Any, ...], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        model(*args)
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


def check_static_models(module: torch.nn.Module, path: str, dynamic: Any,
                        programs: Dict[int, Any], rtol: float, atol: Optional[float],
                        timed: bool, notes: List[str]) -> List[int]:
    """Each static model against the Python module on the rows it was exported with, then timed
    against the `dynamic` model on them (alternating rounds, the best run of each). When the
    sizes were torchship's default, those not 3% faster are removed from the package: a default
    must not slow a model down (ViT-B/16 ran 9% slower at static batch 1). Sizes asked for by
    name are kept. Returns the sizes kept."""
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
        dynamic_ms = static_ms = float("inf")
        for _ in range(3):  # the first round warms both up
            dynamic_ms = min(dynamic_ms, _best_ms(dynamic, args, 3))
            static_ms = min(static_ms, _best_ms(static, args, 3))
        keep = not timed or static_ms < KEEP_BELOW * dynamic_ms
        notes.append(f"aoti: static batch {size} {'kept' if keep else 'left out'}: "
                     f"{static_ms:.2f} ms against the dynamic model's {dynamic_ms:.2f} ms" +
                     ("" if timed else " (asked for by static_batches)"))
        (kept if keep else dropped).append(size)
    if dropped:
        remove_models(path, [model_name(size) for size in dropped])
    return kept
