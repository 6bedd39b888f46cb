"""torch.export of the pipeline, as the formats that start from an ExportedProgram take it
(AOTInductor, OpenVINO): forward's argument names, which sizes are dynamic, and torch.export's
refusal read as findings at the user's line (torchship.doctor)."""

from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import torch

from .doctor import diagnose_export
from .dynamic_dims import dynamic_shapes
from .errors import ExportError
from .input_structure import argument_names, refuse_varying_inputs
from .manifest import Manifest


@dataclass(frozen=True)
class ProgramInputs:
    """The program's inputs: forward's argument names, torch.export's dynamic_shapes, what the
    manifest's export.dynamic_dims records of them (before their ranges are known) and the
    argument position of each input it names."""

    names: List[str]
    dynamic_shapes: Any
    dynamic_dims: Dict[str, Any]
    positions: Dict[str, int]

    def batched(self) -> List[int]:
        """The positions of the arguments with a dynamic batch dimension."""
        return sorted(self.positions[name] for name, dims in self.dynamic_dims.items()
                      if dims.get("0") == "batch")


def program_inputs(module: torch.nn.Module, cases_inputs: List[Tuple[Any, ...]],
                   manifest: Manifest) -> ProgramInputs:
    """The inputs of the program torch.export makes of `module`: the golden cases' arguments
    must share their structure (refused otherwise), the manifest says which sizes are free."""
    names = argument_names(module, len(cases_inputs[0]))
    refuse_varying_inputs(names, cases_inputs, manifest)
    return ProgramInputs(names, *dynamic_shapes(names, cases_inputs[0], manifest))


def export_program(module: torch.nn.Module, example: Tuple[Any, ...],
                   inputs: ProgramInputs) -> Any:
    """torch.export.export of `module` on `example` with the inputs' dynamic sizes; a refusal
    becomes an ExportError with torch's reason at the user's source line."""
    try:
        return torch.export.export(module, example, dynamic_shapes=inputs.dynamic_shapes)
    except Exception as error:
        raise ExportError(f"torch.export cannot export {type(module).__name__}:\n"
                          f"{diagnose_export(error)}") from error
