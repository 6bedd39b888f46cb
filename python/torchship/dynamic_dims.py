"""The dynamic sizes of an exported program (the manifest's export.dynamic_dims): what
torch.export is told is dynamic, the range it proves for each size and, for a format that narrows
it (AOTInductor's compiled input checks, torchship.aoti.pt2_package), the range it accepts."""

from typing import Any, Dict, List, Optional, Tuple

import torch

from .errors import ExportError
from .manifest import Manifest

BATCH_MAX = 4096  # the largest batch an export with a dynamic batch dimension accepts


def dynamic_shapes(names: List[str], args: Tuple[Any, ...], manifest: Manifest
                   ) -> Tuple[Optional[Tuple[Any, ...]], Dict[str, Any], Dict[str, int]]:
    """torch.export's dynamic_shapes for the top-level tensor inputs with a manifest spec: a
    shared "batch" Dim on dim 0 when manifest.batch_dim, one Dim per -1 in the shape; and what
    the manifest records of it ({input spec name: {dim: Dim name}}: C++ finds it by the spec's
    name), with each recorded input's argument position."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=BATCH_MAX)
    shapes: List[Any] = []
    recorded: Dict[str, Any] = {}
    positions: Dict[str, int] = {}
    for index, (name, value) in enumerate(zip(names, args)):
        spec = manifest.inputs[index] if index < len(manifest.inputs) else None
        if not isinstance(value, torch.Tensor) or spec is None:
            shapes.append(None)
            continue
        dims: Dict[int, Any] = {}
        for dim in spec.free_dims(manifest.batch_dim):
            if dim < value.dim():
                # A batch shares one Dim; any other free size is what the code allows:
                # torch.export infers its range (a network with five stride-2 stages needs 17
                # pixels or more), and the manifest records it.
                dims[dim] = batch if dim == 0 and manifest.batch_dim else Dim.DYNAMIC
        shapes.append(dims or None)
        if dims:
            recorded[spec.name] = {str(dim): "batch" if d is batch else f"{spec.name}_{dim}"
                                   for dim, d in sorted(dims.items())}
            positions[spec.name] = index
    if not recorded:
        return None, {}, {}
    return tuple(shapes), recorded, positions


def _finite(value: Any) -> Optional[int]:
    """A range bound as an int; None for infinity (torch's int_oo, sympy's oo)."""
    if str(value) in ("int_oo", "oo", "-int_oo", "-oo"):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None


def exported_ranges(program: Any) -> Dict[Tuple[int, int], Tuple[int, Optional[int]]]:
    """The range torch.export proved for each dynamic size, per (flat tensor input, dim); None
    for no upper bound. The compiled code checks only upper bounds (see
    inductor_setup.inductor_options): torchship checks the lower ones before running it."""
    user_inputs = set(program.graph_signature.user_inputs)
    ranges: Dict[Tuple[int, int], Tuple[int, Optional[int]]] = {}
    flat = 0
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        value = node.meta.get("val")
        if isinstance(value, torch.Tensor):
            for dim, size in enumerate(value.shape):
                if isinstance(size, torch.SymInt):
                    bound = program.range_constraints.get(size.node.expr)
                    if bound is not None:
                        ranges[(flat, dim)] = (_finite(bound.lower) or 0, _finite(bound.upper))
            flat += 1
    return ranges


def record_ranges(recorded: Dict[str, Any], positions: Dict[str, int],
                  example: Tuple[Any, ...],
                  exported: Dict[Tuple[int, int], Tuple[int, Optional[int]]],
                  bounds: Optional[Dict[Tuple[int, int], Dict[str, int]]] = None
                  ) -> Dict[str, Any]:
    """dynamic_dims with each dimension's accepted range, {name: {dim: {name, min, max}}}: the
    exported program's range, narrowed to what compiled checks accept where `bounds` holds them
    (AOTInductor; None: the format runs the exported ranges as they are). A bounded range whose
    compiled check is not found (the generated code's wording changed) is refused: the server
    would build batches the compiled code refuses."""
    flat_of_argument: List[int] = []
    flat = 0
    for value in example:
        flat_of_argument.append(flat)
        flat += sum(1 for leaf in torch.utils._pytree.tree_leaves(value)
                    if isinstance(leaf, torch.Tensor))
    ranges: Dict[str, Any] = {}
    for name, dims in recorded.items():
        ranges[name] = {}
        for dim, dim_name in dims.items():
            key = (flat_of_argument[positions[name]], int(dim))
            low, high = exported.get(key, (1, None))
            compiled = {} if bounds is None else bounds.get(key, {})
            if bounds is not None and high is not None and "max" not in compiled:
                raise ExportError(
                    f"format='aoti': cannot tell which sizes the compiled code accepts in "
                    f"dimension {dim} of input {name!r} (torch.export allows {low} to {high}; "
                    "AOTInductor's input check was not found in the generated code): this "
                    f"torch ({torch.__version__}) writes it differently than torchship reads")
            low = max(low, compiled.get("min", low))
            if "max" in compiled:
                high = compiled["max"] if high is None else min(high, compiled["max"])
            ranges[name][dim] = {"name": dim_name, "min": low, "max": high}
    return ranges
