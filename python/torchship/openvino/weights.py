"""A weights update's OpenVINO form (torchship.export_weights): OpenVINO folds weights into its
constants, so the module is converted again, as the form was (the same dynamic sizes), and run
on the golden inputs."""

from typing import Any, Dict, List, Tuple

import torch

from ..manifest import Manifest, TensorSpec
from ..program import export_program, program_inputs
from .conversion import convert
from .ir_archive import GRAPH, WEIGHTS
from .runner import CompiledIR
from .writer import ir_bytes


def outputs_with_weights(module: torch.nn.Module, tensors: List[Tuple[str, torch.Tensor]],
                         cases: List[Tuple[Tuple[Any, ...], str]], data: bytes, origin: str,
                         manifest: Dict[str, Any]) -> Tuple[Dict[str, bytes], List[Any]]:
    """The IR's records and what it computes on each golden case's arguments (the unlabelled
    cases give torch.export its example, the form's manifest its dynamic sizes)."""
    specs = Manifest(inputs=[TensorSpec(spec["name"], spec.get("datatype"), spec.get("shape"))
                             for spec in manifest["inputs"]],
                     batch_dim=manifest.get("batch_dim", False))
    examples = [args for args, label in cases if not label]
    program = export_program(module, examples[0], program_inputs(module, examples, specs))
    graph, weights = ir_bytes(convert(program))
    compiled = CompiledIR(graph, weights, program.call_spec.out_spec)
    return {GRAPH: graph, WEIGHTS: weights}, [compiled(*args) for args, _ in cases]
