"""Static batch sizes, for the formats that compile a model for fixed sizes (AOTInductor at
export, OpenVINO at load): with every size known, the compiler picks kernels and prepacks weights
for those sizes, which it does not do for a dynamic batch. A form with a dynamic batch also holds
a model for each of these sizes, run for a request of exactly that size. Here: which sizes, the
example's rows at a size, and the rule that keeps a static model (checked and timed by each
format)."""

import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch

from .dynamic_dims import BATCH_MAX
from .errors import ExportError
from .manifest import Manifest

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
    """The name of the model for batch `size` (AOTInductor: its folder in the package)."""
    return f"batch_{size}"


def example_rows(example: Tuple[Any, ...], batched: List[int], size: int) -> Tuple[Any, ...]:
    """The example with `size` rows in each batched argument, cycling through its rows when it
    has fewer."""
    def rows(tensor: torch.Tensor) -> torch.Tensor:
        index = torch.arange(size) % tensor.shape[0]
        return tensor.index_select(0, index.to(tensor.device)).contiguous()
    return tuple(rows(value) if index in batched else value for index, value in enumerate(example))


def static_entry(size: int, batched: List[int]) -> dict:
    """The manifest's record of a kept static model (export.static_batches)."""
    return {"batch": size, "model": model_name(size), "arguments": batched}


def _best_ms(model: Callable[..., Any], args: Tuple[Any, ...], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        model(*args)
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


def _ms(value: float) -> str:
    """Three significant digits, never an exponent: 0.0712, 4.31, 812."""
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def keep_static(form: str, size: int, static: Callable[..., Any], dynamic: Callable[..., Any],
                args: Tuple[Any, ...], timed: bool, notes: List[str]) -> bool:
    """Whether the static model stays, timed against the dynamic one on `args` (alternating
    rounds, the best run of each): sizes asked for by name stay; torchship's default stays only
    when 3% faster, since a default must not slow a model down (ViT-B/16 ran 9% slower at static
    batch 1 under AOTInductor). Notes the times."""
    dynamic_ms = static_ms = float("inf")
    for _ in range(3):  # the first round warms both up
        dynamic_ms = min(dynamic_ms, _best_ms(dynamic, args, 3))
        static_ms = min(static_ms, _best_ms(static, args, 3))
    keep = not timed or static_ms < KEEP_BELOW * dynamic_ms
    notes.append(f"{form}: static batch {size} {'kept' if keep else 'left out'}: "
                 f"{_ms(static_ms)} ms against the dynamic model's {_ms(dynamic_ms)} ms" +
                 ("" if timed else " (asked for by static_batches)"))
    return keep
