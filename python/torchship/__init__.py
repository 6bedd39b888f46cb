"""torchship, export side: wrap a PyTorch pipeline, convert it to TorchScript, check it, and
write one archive that the C++ library, CLI and server load."""

__version__ = "0.1.0"

from .checks import Finding  # noqa: E402
from .export import ExportError, ExportResult, ExportWarning, export, load  # noqa: E402
from .manifest import Manifest, TensorSpec, image_input, tensor_spec  # noqa: E402

__all__ = ["export", "load", "ExportError", "ExportResult", "ExportWarning", "Finding",
           "Manifest", "TensorSpec",
           "image_input", "tensor_spec", "__version__"]
