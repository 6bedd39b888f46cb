"""torchship.export's AOTInductor form (format="aoti"): torch.export, then AOTInductor compiles
the program for one CPU target into a .pt2 package (.writer, .pt2_package), optionally with
models for static batch sizes (.static_batches). The names scripts and tests use: available, the
CPU targets and features (.cpu_targets), the compiler environment and options
(.inductor_setup)."""

import torch

from ..errors import ExportError
from ..manifest import Manifest
from ..options import ExportOptions
from ..static_batches import check_static_batches
from .cpu_targets import CPU_TARGETS, FEATURES, check_target, cpu_features, cpu_flags, is_x86
from .inductor_setup import (available, check_vectorized, compiler_environment,
                             inductor_cache_dir, inductor_options, size_oblivious)
from .writer import write_aoti

__all__ = ["CPU_TARGETS", "FEATURES", "available", "check_vectorized", "compiler_environment",
           "cpu_features", "cpu_flags", "inductor_cache_dir", "inductor_options", "is_x86",
           "size_oblivious", "validate", "write_aoti"]


def validate(options: ExportOptions) -> None:
    """Refuses the TorchScript-only options, a torch without AOTInductor, a CPU target this CPU
    cannot run, and static_batches that are not batch sizes."""
    refused = [name for name, given in (("method", options.method is not None),
                                        ("trace", options.trace),
                                        ("precision", options.precision != "fp32"),
                                        ("calibration", options.calibration),
                                        ("quantize", options.quantize))
               if given]
    if refused:
        raise ExportError(f"format='aoti' exports with torch.export, in fp32: "
                          f"{', '.join(refused)} appl{'ies' if len(refused) == 1 else 'y'} to "
                          "format='torchscript' only")
    if not available():
        raise ExportError(f"format='aoti' needs torch.export and AOTInductor (torch >= 2.6); "
                          f"this is torch {torch.__version__}")
    check_target(options.cpu_target)
    check_static_batches(options.static_batches, options.manifest or Manifest())
