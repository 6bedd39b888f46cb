"""The IR as the archive holds it, compiled by OpenVINO's CPU plugin and called like the Python
module: the export checks run what C++ will run (the same bytes, read from memory, in the
precision asked for)."""

from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.utils._pytree as pytree

# OpenVINO runs bf16 by itself on CPUs that compute it natively unless told otherwise: every
# compile names its precision.
PRECISIONS = ("fp32", "bf16")
_HINT = {"fp32": "f32", "bf16": "bf16"}


class CompiledIR:
    """`ir_graph` (model.xml) and `ir_weights` (model.bin) compiled for the CPU; called with
    forward's arguments, returns forward's structure (`out_spec`). `static_batch` fixes dim 0
    of some inputs (by their flat position) at a size, as C++ does for export.static_batches."""

    def __init__(self, ir_graph: bytes, ir_weights: bytes, out_spec: Any,
                 precision: str = "fp32", static_batch: Optional[Dict[int, int]] = None):
        import openvino as ov
        core = ov.Core()
        weights = ov.Tensor(np.frombuffer(ir_weights, dtype=np.uint8).copy())
        model = core.read_model(ir_graph.decode(), weights)
        if static_batch:
            model.reshape({model.inputs[position]: _with_batch(model.inputs[position], size)
                           for position, size in static_batch.items()})
        # As C++ compiles it (src/backends/openvino.cpp): one stream of torch's threads,
        # unpinned, so that what export times is what C++ runs.
        self.compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": _HINT[precision], "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": torch.get_num_threads(), "ENABLE_CPU_PINNING": False})
        self.out_spec = out_spec

    def __call__(self, *args: Any) -> Any:
        flat = [leaf for leaf in pytree.tree_leaves(args) if isinstance(leaf, torch.Tensor)]
        request = self.compiled.create_infer_request()
        request.infer([tensor.detach().contiguous().numpy() for tensor in flat])
        outputs: List[torch.Tensor] = [
            torch.from_numpy(np.array(request.get_output_tensor(i).data, copy=True))
            for i in range(len(self.compiled.outputs))]
        return pytree.tree_unflatten(outputs, self.out_spec)


def _with_batch(parameter: Any, size: int) -> Any:
    """The parameter's shape with dim 0 fixed at `size`, its other dimensions as they are."""
    import openvino as ov
    shape = ov.PartialShape(parameter.get_partial_shape())
    shape[0] = ov.Dimension(size)
    return shape
