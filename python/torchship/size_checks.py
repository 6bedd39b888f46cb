"""Exports checked across their dynamic sizes, not only at the example's. A package compiled with
a dynamic height can be wrong at a height nobody ran (AOTInductor's code for MaxPool2d with
ceil_mode once returned 43 rows where eager returns 44), and a trace can bake a size in. For
every dimension the manifest leaves free, the export is run at the smallest size allowed, at the
size next to the example's (the other parity) and at the largest allowed up to twice the
example's, compared with the eager module, and kept as golden cases (`torchship check` reruns
them)."""

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch

from .errors import first_line
from .tree import first_mismatch

# The largest size checked is at most this many times the example's: the checks run at export
# and again whenever C++ verifies an optimization at load, so they stay within a few forwards.
MAX_GROWTH = 2


@dataclass(frozen=True)
class DynamicDim:
    """One size that may vary: where it is (argument position, dimension: several for a batch
    dimension that every batched input shares), its name in messages, and the range allowed
    (high None: no known limit)."""

    label: str
    places: Tuple[Tuple[int, int], ...]
    low: int
    high: Optional[int]


@dataclass(frozen=True)
class SizeCase:
    """A golden case at another size than the example's."""

    label: str  # "input 'image' dim 0 = 97"
    args: Tuple[Any, ...]
    expected: Any
    actual: Any


def sizes_to_check(example: int, low: int, high: Optional[int]) -> List[int]:
    """The smallest size allowed, the example's neighbour of the other parity, and the largest
    allowed up to MAX_GROWTH times the example's; never the example's own."""
    top = example * MAX_GROWTH if high is None else min(high, example * MAX_GROWTH)
    neighbour = example + 1 if example + 1 <= top else example - 1
    return sorted({size for size in (max(low, 1), neighbour, top)
                   if max(low, 1) <= size <= top and size != example})


def resized(value: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """The example's values tiled (or cut) to `size` along `dim`: real values at another size."""
    index = torch.arange(size, device=value.device) % value.shape[dim]
    return value.index_select(dim, index).contiguous()


def check_sizes(eager: Callable[..., Any], exported: Callable[..., Any],
                example: Tuple[Any, ...], dims: Sequence[DynamicDim], rtol: float,
                atol: Optional[float]) -> Tuple[List[SizeCase], Optional[str]]:
    """Runs both at the sizes to check of each dynamic dimension. Sizes the eager module itself
    refuses are skipped. Returns the cases that agree and the first disagreement, as one line
    naming the size and the output (None when all agree)."""
    cases: List[SizeCase] = []
    for dim in dims:
        first_arg, first_dim = dim.places[0]
        example_size = example[first_arg].shape[first_dim]
        for size in sizes_to_check(example_size, dim.low, dim.high):
            args = list(example)
            for position, axis in dim.places:
                args[position] = resized(args[position], axis, size)
            label = f"{dim.label} = {size}"
            where = f"at {label} (the example's is {example_size}):"
            with torch.no_grad():
                try:
                    expected = eager(*args)
                except Exception:
                    continue  # a size the Python module refuses is not one to check
                try:
                    actual = exported(*args)
                except Exception as error:
                    return cases, (f"{where} the Python module runs and the export fails "
                                   f"({first_line(str(error), type(error).__name__)})")
            mismatch = first_mismatch(expected, actual, rtol, atol)
            if mismatch:
                return cases, f"{where} {mismatch}"
            cases.append(SizeCase(label, tuple(args), expected, actual))
    return cases, None


def manifest_dims(manifest: Any, example: Tuple[Any, ...]) -> List[DynamicDim]:
    """The free sizes a manifest declares for top-level tensor arguments (-1 in a spec's shape,
    and the batch dimension), without known limits: a TorchScript archive's."""
    dims: List[DynamicDim] = []
    batch: List[Tuple[int, int]] = []
    for position, (spec, value) in enumerate(zip(manifest.inputs, example)):
        if not isinstance(value, torch.Tensor):
            continue
        for dim in spec.free_dims(manifest.batch_dim):
            if dim >= value.dim():
                continue
            if dim == 0 and manifest.batch_dim:
                batch.append((position, 0))
            else:
                dims.append(DynamicDim(f"input '{spec.name}' dim {dim}", ((position, dim),), 1,
                                       None))
    if batch:
        dims.insert(0, DynamicDim("the batch size", tuple(batch), 1, None))
    return dims


def package_dims(dynamic_dims: dict, positions: dict) -> List[DynamicDim]:
    """The dynamic sizes of a .pt2 package, with the ranges its manifest records
    ({input name: {dim: {name, min, max}}}; a batch shared by the inputs that have one)."""
    dims: List[DynamicDim] = []
    batch: List[Tuple[int, int]] = []
    batch_range = (1, None)
    for name, per_dim in dynamic_dims.items():
        for dim, entry in per_dim.items():
            place = (positions[name], int(dim))
            if entry["name"] == "batch":
                batch.append(place)
                batch_range = (entry["min"], entry["max"])
            else:
                dims.append(DynamicDim(f"input '{name}' dim {dim}", (place,), entry["min"],
                                       entry["max"]))
    if batch:
        dims.insert(0, DynamicDim("the batch size", tuple(batch), *batch_range))
    return dims


def note_sizes(cases: Sequence[SizeCase], notes: List[str]) -> None:
    """One note naming the sizes checked beside the example's, when there were any."""
    if cases:
        notes.append("checked at other sizes than the example's, kept as golden cases: " +
                     "; ".join(case.label for case in cases))
