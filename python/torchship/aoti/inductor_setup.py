"""How torchship drives AOTInductor: whether this torch has it, the options it compiles with,
and the patches around a compile (the compiler environment, size-oblivious guards) and around
running the compiled code (its input checks); and the check that the compile found the CPU's
vector ISA."""

import contextlib
import getpass
import os
import tempfile
from typing import Any, Dict, Iterator

import torch

from .cpu_targets import BASELINE_ISAS, INVALID_ISA, SIMDLEN, cpu_flags, is_x86
from ..errors import ExportError


def available() -> bool:
    """Whether this torch has torch.export and AOTInductor's packages (torch >= 2.6; Debian's
    1.13 has neither)."""
    try:
        import torch._inductor  # noqa: F401
    except Exception:
        return False
    return hasattr(torch, "export") and hasattr(torch._inductor, "aoti_load_package") \
        and hasattr(torch._inductor, "aoti_compile_and_package")


def inductor_options(target: str, swappable_weights: bool = False) -> Dict[str, Any]:
    """AOTInductor's options: freezing (weights become constants of the compiled code, folded
    and prepacked) unless `swappable_weights` (then every parameter and buffer stays a constant
    under its own name, small ones included, for C++ to replace) and, for a baseline, its -march
    and vector width. A baseline keeps weights in plain layout: oneDNN's prepacked weights are
    blocked for the exporting CPU's vector width."""
    options: Dict[str, Any] = {"freezing": not swappable_weights}
    from torch._inductor import config as inductor_config
    if swappable_weights:
        options["always_keep_tensor_constants"] = True
        # The weights in a blob beside the code rather than inside the library: C++ reads them
        # into one copy that the package's static-batch models share, and the library it keeps
        # mapped (never unloaded) holds code only.
        if hasattr(inductor_config.aot_inductor, "package_constants_on_disk_format"):
            options["aot_inductor.package_constants_in_so"] = False
            options["aot_inductor.package_constants_on_disk_format"] = "binary_blob"
    # A dynamic size of 1 is what the exported program allows (Dim min=1), but the compiled
    # code's input checks refuse sizes below 2 unless told not to (torch.export's 0/1
    # specialization); batch 1 is the commonest request. The golden cases run through the
    # compiled code at the sizes they have.
    if hasattr(inductor_config.aot_inductor, "check_lowerbound"):
        options["aot_inductor.check_lowerbound"] = False
    if target != "native":
        options.update({"cpp.march": target, "cpp.simdlen": SIMDLEN[target],
                        "cpp.weight_prepack": False})
    return options


def inductor_cache_dir() -> str:
    """torchship's own inductor cache: inductor caches its vector-ISA probes on disk, and a probe
    built before the link fix (compiler_environment) stays there, failed, for good."""
    configured = os.environ.get("TORCHSHIP_INDUCTOR_CACHE_DIR")
    if configured:
        return configured
    try:
        user = getpass.getuser()
    except Exception:
        user = f"uid_{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return os.path.join(tempfile.gettempdir(), f"torchship_inductor_{user}")


def _clear_isa_caches() -> None:
    from torch._inductor import cpu_vec_isa
    cpu_vec_isa.valid_vec_isa_list.cache_clear()
    probe = getattr(cpu_vec_isa.VecISA, "_VecISA__bool__impl", None)  # per-ISA probe result
    if probe is not None and hasattr(probe, "cache_clear"):
        probe.cache_clear()


@contextlib.contextmanager
def compiler_environment(target: str = "native") -> Iterator[None]:
    """Makes AOTInductor compile vectorized code linked to this torch, for the duration.

    Inductor's cpp_builder puts Python's LIBDIR before torch's lib folder in -L. With a Python
    whose LIBDIR holds another libtorch (Debian's python3.11 and its libtorch 1.13), -ltorch
    links that one: the vector-ISA probe then fails to load (undefined Sleef_* symbols) and
    every kernel is compiled scalar. AOT code links no libpython, so the Python library folders
    are dropped. The probe results inductor caches (in memory, and on disk in its cache dir) are
    reset and the compile uses torchship's own cache dir. `target` restricts the vector ISAs
    inductor may pick to those of an x86-64 baseline."""
    from torch._inductor import cpp_builder, cpu_vec_isa

    python_args = cpp_builder._get_python_related_args
    valid_isas = cpu_vec_isa.valid_vec_isa_list
    cache_dir = os.environ.get("TORCHINDUCTOR_CACHE_DIR")

    def includes_only():
        include_dirs, _ = python_args()
        return include_dirs, []

    def baseline_isas():
        return [isa for isa in valid_isas() if str(isa) in BASELINE_ISAS[target]]

    _clear_isa_caches()
    cpp_builder._get_python_related_args = includes_only
    if target in BASELINE_ISAS:
        cpu_vec_isa.valid_vec_isa_list = baseline_isas
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = inductor_cache_dir()
    try:
        yield
    finally:
        cpp_builder._get_python_related_args = python_args
        cpu_vec_isa.valid_vec_isa_list = valid_isas
        if cache_dir is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
        _clear_isa_caches()  # the process's own compiles probe again, as they would have


def size_oblivious():
    """Compiles without guarding on the example's sizes where the program does not need it:
    without this, inductor's fake convolution picks a memory format by batch size (< 16, > 1)
    and narrows a batch range of 1..4096 to 2..15."""
    try:
        import torch.fx.experimental._config as fx_config
    except ImportError:
        return contextlib.nullcontext()
    if not hasattr(fx_config, "backed_size_oblivious"):
        return contextlib.nullcontext()
    return fx_config.patch(backed_size_oblivious=True)


@contextlib.contextmanager
def runtime_input_checks() -> Iterator[None]:
    """Makes compiled code loaded for the duration check its inputs' sizes: it does only when
    AOTI_RUNTIME_CHECK_INPUTS is set as it first runs. C++ sets it, and the golden cases must
    pass the same checks here."""
    checking = os.environ.get("AOTI_RUNTIME_CHECK_INPUTS")
    os.environ["AOTI_RUNTIME_CHECK_INPUTS"] = "1"
    try:
        yield
    finally:
        if checking is None:
            os.environ.pop("AOTI_RUNTIME_CHECK_INPUTS", None)
        else:
            os.environ["AOTI_RUNTIME_CHECK_INPUTS"] = checking


def check_vectorized(isa: str, target: str) -> None:
    """Refuses scalar kernels (vector ISA `isa` INVALID_ISA) compiled for `target` on an x86-64
    CPU with AVX2, unless the target is the baseline without vector kernels."""
    if isa != INVALID_ISA or target == "x86-64-v2" or not is_x86() or "avx2" not in cpu_flags():
        return
    raise ExportError(
        "format='aoti': AOTInductor compiled scalar kernels (AOTI_CPU_ISA INVALID_VEC_ISA) on an "
        "x86-64 CPU with AVX2: its vector-ISA probe failed to build or load. Usually the C++ "
        "compile linked another libtorch than this torch's (docs/pitfalls.md, \"AOTInductor "
        "compiles scalar kernels\"), or a failed probe is cached in "
        f"{inductor_cache_dir()} (delete that folder and export again)")
