"""torchship, export side: wrap a PyTorch pipeline, convert it to TorchScript, check it, and
write one archive that the C++ library, CLI and server load."""

def _release() -> str:
    """The installed package's version, or the repository's VERSION file when torchship is used
    from a checkout (python/ on PYTHONPATH): the one version the C++ side is built with too."""
    import os
    from importlib import metadata
    checkout = os.path.join(os.path.dirname(__file__), "..", "..", "VERSION")
    if os.path.exists(checkout):
        with open(checkout) as f:
            return f.read().strip()
    return metadata.version("torchship")


__version__ = _release()

from .checks import Finding  # noqa: E402
from .export import ExportError, ExportResult, ExportWarning, export, load  # noqa: E402
from .manifest import Manifest, TensorSpec, image_input, tensor_spec  # noqa: E402

__all__ = ["export", "load", "ExportError", "ExportResult", "ExportWarning", "Finding",
           "Manifest", "TensorSpec",
           "image_input", "tensor_spec", "__version__"]
