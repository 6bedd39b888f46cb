"""torchship, export side: wrap a PyTorch pipeline, convert it to TorchScript (or compile it with
AOTInductor), check it, and write one archive that the C++ library, CLI and server load."""

from .errors import ExportError, ExportWarning, Finding
from .export import export, export_weights
from .manifest import Detection, Manifest, TensorSpec, image_input, tensor_spec
from .native import cmake_prefix_path
from .result import ExportResult
from .torchscript import load
from .version import __version__
from .weights import WeightsUpdateResult

__all__ = ["export", "export_weights", "WeightsUpdateResult", "load", "ExportError", "ExportResult", "ExportWarning", "Finding",
           "Detection", "Manifest", "TensorSpec",
           "image_input", "tensor_spec", "cmake_prefix_path", "__version__"]
