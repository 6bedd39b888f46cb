"""torchship.export's OpenVINO form (format="openvino"): torch.export, then openvino.convert_model
to OpenVINO IR (.conversion), checked by running the IR (.runner) and written with the manifest
and golden vectors into one archive (.ir_archive, .writer)."""

import importlib.util

import torch

from ..errors import ExportError
from ..manifest import Manifest
from ..options import ExportOptions
from ..static_batches import check_static_batches
from .writer import write_openvino

__all__ = ["available", "validate", "write_openvino"]


def available() -> bool:
    """Whether this Python can export to OpenVINO: torch.export and the openvino package."""
    return hasattr(torch, "export") and importlib.util.find_spec("openvino") is not None


def validate(options: ExportOptions) -> None:
    """Refuses the options of other formats, a Python without torch.export or openvino, and
    static_batches that are not batch sizes."""
    refused = [name for name, given in (("method", options.method is not None),
                                        ("trace", options.trace),
                                        ("precision", options.precision != "fp32"),
                                        ("calibration", options.calibration),
                                        ("quantize", options.quantize),
                                        ("cpu_target", options.cpu_target != "native"),
                                        ("swappable_weights", options.swappable_weights))
               if given]
    if refused:
        raise ExportError(
            f"format='openvino' exports with torch.export, in fp32 (bf16 is chosen where it "
            f"runs): {', '.join(refused)} appl{'ies' if len(refused) == 1 else 'y'} to other "
            "formats only")
    if not hasattr(torch, "export"):
        raise ExportError(f"format='openvino' needs torch.export (torch >= 2.1); this is torch "
                          f"{torch.__version__}")
    if importlib.util.find_spec("openvino") is None:
        raise ExportError("format='openvino' needs the openvino package: pip install "
                          "openvino")
    check_static_batches(options.static_batches, options.manifest or Manifest())
