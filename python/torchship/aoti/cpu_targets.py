"""The CPUs a .pt2 package is compiled for (cpu_target): this CPU ("native") or an x86-64
baseline, the CPU features code compiled for each may use (as the manifest's export.cpu records
them and C++ compares them with the CPU it runs on), and inductor's vector ISAs each allows."""

import platform
from typing import List

from ..errors import ExportError

CPU_TARGETS = ("native", "x86-64-v2", "x86-64-v3", "x86-64-v4")

# The CPU features compiled code may use, as /proc/cpuinfo names them: what the manifest records
# and C++ compares with the CPU it runs on.
FEATURES = ("avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "abm", "movbe", "avx512f", "avx512dq",
            "avx512cd", "avx512bw", "avx512vl", "avx512ifma", "avx512vbmi", "avx512_vbmi2",
            "avx512_vnni", "avx512_bitalg", "avx512_vpopcntdq", "avx512_bf16", "avx512_fp16",
            "avx_vnni", "gfni", "vaes", "vpclmulqdq", "amx_tile", "amx_bf16", "amx_int8",
            "avx512_4fmaps")
_V3 = ("avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "abm", "movbe")
_V4 = _V3 + ("avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl")
_BASELINES = {"x86-64-v2": (), "x86-64-v3": _V3, "x86-64-v4": _V4}
# Inductor's vector ISAs (str(VecISA)) each baseline allows, and the vector width that picks it.
BASELINE_ISAS = {"x86-64-v2": (), "x86-64-v3": ("avx2",), "x86-64-v4": ("avx2", "avx512")}
SIMDLEN = {"x86-64-v2": 0, "x86-64-v3": 256, "x86-64-v4": 512}

INVALID_ISA = "INVALID_VEC_ISA"  # inductor's name for no vector ISA: scalar kernels


def is_x86() -> bool:
    return platform.machine() in ("x86_64", "AMD64")


def cpu_flags() -> List[str]:
    """This CPU's /proc/cpuinfo flags ([] without /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].split()
    except OSError:
        pass
    return []


def cpu_features(target: str) -> List[str]:
    """The features code compiled for `target` may use, in FEATURES' order."""
    if not is_x86():
        return []
    if target == "native":
        have = set(cpu_flags())
        return [name for name in FEATURES if name in have]
    return list(_BASELINES[target])


def check_target(target: str) -> None:
    """Refuses a target that is none of CPU_TARGETS, or that this CPU cannot run (the export
    runs the package)."""
    if target not in CPU_TARGETS:
        raise ExportError(f"cpu_target must be one of {', '.join(CPU_TARGETS)}, got {target!r}")
    if target == "native":
        return
    if not is_x86():
        raise ExportError(f"cpu_target={target!r} is an x86-64 baseline; this CPU is "
                          f"{platform.machine()}")
    missing = [name for name in _BASELINES[target] if name not in set(cpu_flags())]
    if missing:
        raise ExportError(f"cpu_target={target!r}: this CPU lacks {', '.join(missing)}; the "
                          "export runs the package on the golden cases, so it needs a CPU of "
                          "that baseline or above")
