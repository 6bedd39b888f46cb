"""torchship.export's TorchScript form (format="torchscript"): trace, script or both
(.conversion), optionally in bf16 or int8 (.precision), saved by torch.jit.save with the manifest
and golden vectors as extra files (.writer)."""

from ..errors import ExportError
from ..options import ExportOptions
from .compat import refusal_message, torchscript_support
from .conversion import METHODS
from .precision import PRECISIONS
from .writer import load, write_torchscript

__all__ = ["METHODS", "PRECISIONS", "load", "validate", "write_torchscript"]


def validate(options: ExportOptions) -> None:
    """Refuses the options of compiled formats, an unknown method, a precision the method cannot
    export, and a torch that refuses TorchScript."""
    if options.static_batches is not None:
        raise ExportError("static_batches applies to format='aoti' and 'openvino' (compiled code); a "
                          "TorchScript archive takes any batch size as it is")
    if options.cpu_target != "native":
        raise ExportError("cpu_target applies to format='aoti' (compiled code); a TorchScript "
                          "archive runs on any CPU libtorch runs on")
    if options.swappable_weights:
        raise ExportError("swappable_weights applies to format='aoti' (compiled code); a "
                          "TorchScript archive's weights can always be updated")
    method = "trace" if options.method is None else options.method
    if method not in METHODS:
        raise ExportError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    precision = options.precision
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and method != "trace":
        raise ExportError("precision='bf16' needs method 'trace': autocast's casts are recorded "
                          "by tracing the whole pipeline")
    if precision == "int8" and method == "script":
        raise ExportError("precision='int8' needs method 'trace' or 'hybrid': FX quantization "
                          "produces modules that TorchScript cannot script as a whole")
    if precision == "int8" and not options.calibration:
        raise ExportError("precision='int8' needs calibration=[...]: argument tuples (a few "
                          "hundred representative inputs) to measure activation ranges on")
    support = torchscript_support()
    if not support.available:
        raise ExportError(refusal_message(support))
