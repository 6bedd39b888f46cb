"""torchship.export(..., format="aoti"): torch.export + AOTInductor, one .pt2 package.

The package is PyTorch's PT2 archive (a zip whose entries share one root folder) with the
compiled model under <root>/data/aotinductor/model/, the manifest as <root>/extra/torchship.json
and the golden vectors under <root>/torchship/golden/ (not under extra/: torch's load_pt2 decodes
every extra file as UTF-8 text, and .npy files are not). The compiled code is native code for one
CPU family: the manifest's export.cpu says which features it may use, and C++ refuses a package
whose features the CPU lacks instead of dying on an illegal instruction.
"""

import contextlib
import getpass
import inspect
import json
import os
import platform
import re
import shutil
import tempfile
import time
import zipfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from .checks import Findings, train_mode
from .doctor import diagnose_export
from .export import (MANIFEST_FILE, ExportError, ExportResult,
                     _golden_files, compare_cases, export_info_of, settle_findings)
from .manifest import Manifest

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
_BASELINE_ISAS = {"x86-64-v2": (), "x86-64-v3": ("avx2",), "x86-64-v4": ("avx2", "avx512")}
_SIMDLEN = {"x86-64-v2": 0, "x86-64-v3": 256, "x86-64-v4": 512}

BATCH_MAX = 4096  # the largest batch a package with a dynamic batch dimension accepts
INVALID_ISA = "INVALID_VEC_ISA"


def available() -> bool:
    """Whether this torch has torch.export and AOTInductor's packages (torch >= 2.6; Debian's
    1.13 has neither)."""
    try:
        import torch._inductor  # noqa: F401
    except Exception:
        return False
    return hasattr(torch, "export") and hasattr(torch._inductor, "aoti_load_package") \
        and hasattr(torch._inductor, "aoti_compile_and_package")


def _x86() -> bool:
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
    if not _x86():
        return []
    if target == "native":
        have = set(cpu_flags())
        return [name for name in FEATURES if name in have]
    return list(_BASELINES[target])


def inductor_options(target: str) -> Dict[str, Any]:
    """AOTInductor's options: freezing (weights become constants of the compiled code) and, for
    a baseline, its -march and vector width. A baseline keeps weights in plain layout: oneDNN's
    prepacked weights are blocked for the exporting CPU's vector width."""
    options: Dict[str, Any] = {"freezing": True}
    # A dynamic size of 1 is what the exported program allows (Dim min=1), but the compiled
    # code's input checks refuse sizes below 2 unless told not to (torch.export's 0/1
    # specialization); batch 1 is the commonest request. The golden cases run through the
    # compiled code at the sizes they have.
    from torch._inductor import config as inductor_config
    if hasattr(inductor_config.aot_inductor, "check_lowerbound"):
        options["aot_inductor.check_lowerbound"] = False
    if target != "native":
        options.update({"cpp.march": target, "cpp.simdlen": _SIMDLEN[target],
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
        return [isa for isa in valid_isas() if str(isa) in _BASELINE_ISAS[target]]

    _clear_isa_caches()
    cpp_builder._get_python_related_args = includes_only
    if target in _BASELINE_ISAS:
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


def _argument_names(module: torch.nn.Module, count: int) -> List[str]:
    try:
        parameters = list(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        parameters = []
    return [parameters[i] if i < len(parameters) else f"input_{i}" for i in range(count)]


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(item) for item in value)
    if isinstance(value, dict):
        return any(_has_tensor(item) for item in value.values())
    return False


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor {list(value.shape)}"
    if isinstance(value, (list, tuple)):
        shapes = sorted({str(list(item.shape)) for item in value
                         if isinstance(item, torch.Tensor)})
        return f"a {type(value).__name__} of {len(value)} ({', '.join(shapes)})"
    return f"{type(value).__name__} {value!r}"


def _structure(value: Any) -> Any:
    """What torch.export specializes on besides free tensor sizes: containers, their lengths,
    non-tensor values."""
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dim(), value.dtype)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_structure(item) for item in value))
    if isinstance(value, dict):
        return ("dict", tuple((key, _structure(item)) for key, item in value.items()))
    return ("constant", value)


def _refuse_varying_inputs(names: List[str], cases: List[Tuple[Any, ...]],
                           manifest: Manifest) -> None:
    """torch.export specializes a list's length, each element's shape (no Dim reaches into a
    list of images that vary per call) and every non-tensor value: say so before compiling."""
    for index, name in enumerate(names):
        values = [args[index] for args in cases if index < len(args)]
        first = values[0]
        spec = manifest.inputs[index] if index < len(manifest.inputs) else None
        is_list = isinstance(first, (list, tuple)) and _has_tensor(first)
        varies = any(_structure(value) != _structure(first) for value in values[1:])
        if is_list and (varies or (spec is not None and spec.image is not None)):
            other = next((v for v in values[1:] if _structure(v) != _structure(first)), None)
            seen = f" (the example passes {_describe(first)}" + \
                (f", a golden case {_describe(other)})" if other is not None else ")")
            raise ExportError(
                f"format='aoti': input {name!r} is a list of images whose length and element "
                f"shapes vary per call{seen}; torch.export cannot export it: it specializes a "
                "list's length and its elements' shapes, so the .pt2 would accept only lists "
                "like the example. Export the pipeline's batch form instead: one B x H x W x C "
                "tensor (layout BHWC, manifest batch_dim=True), whose batch size is dynamic")
        if varies and not _has_tensor(first):
            other = next(v for v in values[1:] if _structure(v) != _structure(first))
            raise ExportError(
                f"format='aoti': input {name!r} is not a tensor: torch.export bakes its value "
                f"({first!r}) into the package, but a golden case passes {other!r}; pass it as a "
                "tensor, or keep it constant")
        if varies:
            raise ExportError(
                f"format='aoti': input {name!r} changes structure between golden cases "
                f"({_describe(first)} vs another); torch.export specializes containers, their "
                "lengths and non-tensor values: one .pt2 serves one structure")


def _dynamic_shapes(names: List[str], args: Tuple[Any, ...], manifest: Manifest
                    ) -> Tuple[Optional[Tuple[Any, ...]], Dict[str, Any], Dict[str, int]]:
    """torch.export's dynamic_shapes for the top-level tensor inputs with a manifest spec: a
    shared "batch" Dim on dim 0 when manifest.batch_dim, one Dim per -1 in the shape; and what
    the manifest records of it ({input spec name: {dim: Dim name}}: C++ finds it by the spec's
    name), with each recorded input's argument position."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=BATCH_MAX)
    shapes: List[Any] = []
    recorded: Dict[str, Any] = {}
    positions: Dict[str, int] = {}
    for index, (name, value) in enumerate(zip(names, args)):
        spec = manifest.inputs[index] if index < len(manifest.inputs) else None
        if not isinstance(value, torch.Tensor) or spec is None:
            shapes.append(None)
            continue
        dims: Dict[int, Any] = {}
        for dim in spec.free_dims(manifest.batch_dim):
            if dim < value.dim():
                # A batch shares one Dim; any other free size is what the code allows:
                # torch.export infers its range (a network with five stride-2 stages needs 17
                # pixels or more), and the manifest records it.
                dims[dim] = batch if dim == 0 and manifest.batch_dim else Dim.DYNAMIC
        shapes.append(dims or None)
        if dims:
            recorded[spec.name] = {str(dim): "batch" if d is batch else f"{spec.name}_{dim}"
                                   for dim, d in sorted(dims.items())}
            positions[spec.name] = index
    if not recorded:
        return None, {}, {}
    return tuple(shapes), recorded, positions


def _size_oblivious():
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


_BOUND = re.compile(r'input_handles\[(\d+)\]: dim value is too (small|large) at (\d+), "\s*'
                    r'<< "expected (?:it )?to be [<>]= (\d+)')


def _package_files(path: str, suffix: str) -> List[str]:
    """The text of the compiled model's files in the package whose names end with `suffix`."""
    with zipfile.ZipFile(path) as archive:
        return [archive.read(name).decode("utf-8", "replace") for name in archive.namelist()
                if "/data/aotinductor/model/" in name and name.endswith(suffix)]


def _compiled_bounds(path: str) -> Dict[Tuple[int, int], Dict[str, int]]:
    """The sizes the compiled code accepts per (flat input, dim), from the input checks
    AOTInductor generates (run when AOTI_RUNTIME_CHECK_INPUTS is set, as torchship sets it).
    A Dim's upper bound can come out narrower than asked where a kernel choice depends on the
    size; the lower bound check is not generated (see inductor_options)."""
    bounds: Dict[Tuple[int, int], Dict[str, int]] = {}
    for source in _package_files(path, "wrapper.cpp"):
        for handle, side, dim, value in _BOUND.findall(source):
            key = "min" if side == "small" else "max"
            bounds.setdefault((int(handle), int(dim)), {})[key] = int(value)
    return bounds


def _finite(value: Any) -> Optional[int]:
    """A range bound as an int; None for infinity (torch's int_oo, sympy's oo)."""
    if str(value) in ("int_oo", "oo", "-int_oo", "-oo"):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None


def _exported_ranges(program: Any) -> Dict[Tuple[int, int], Tuple[int, Optional[int]]]:
    """The range torch.export proved for each dynamic size, per (flat tensor input, dim); None
    for no upper bound. The compiled code checks only upper bounds (see inductor_options):
    torchship checks the lower ones before running it."""
    user_inputs = set(program.graph_signature.user_inputs)
    ranges: Dict[Tuple[int, int], Tuple[int, Optional[int]]] = {}
    flat = 0
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        value = node.meta.get("val")
        if isinstance(value, torch.Tensor):
            for dim, size in enumerate(value.shape):
                if isinstance(size, torch.SymInt):
                    bound = program.range_constraints.get(size.node.expr)
                    if bound is not None:
                        ranges[(flat, dim)] = (_finite(bound.lower) or 0, _finite(bound.upper))
            flat += 1
    return ranges


def _record_ranges(recorded: Dict[str, Any], positions: Dict[str, int],
                   example: Tuple[Any, ...],
                   exported: Dict[Tuple[int, int], Tuple[int, Optional[int]]],
                   bounds: Dict[Tuple[int, int], Dict[str, int]]) -> Dict[str, Any]:
    """dynamic_dims with each dimension's accepted range, {name: {dim: {name, min, max}}}: the
    exported program's range, narrowed to what the compiled checks accept. A bounded range whose
    compiled check is not found (the generated code's wording changed) is refused: the server
    would build batches the compiled code refuses."""
    flat_of_argument: List[int] = []
    flat = 0
    for value in example:
        flat_of_argument.append(flat)
        flat += sum(1 for leaf in torch.utils._pytree.tree_leaves(value)
                    if isinstance(leaf, torch.Tensor))
    ranges: Dict[str, Any] = {}
    for name, dims in recorded.items():
        ranges[name] = {}
        for dim, dim_name in dims.items():
            key = (flat_of_argument[positions[name]], int(dim))
            low, high = exported.get(key, (1, None))
            compiled = bounds.get(key, {})
            if high is not None and "max" not in compiled:
                raise ExportError(
                    f"format='aoti': cannot tell which sizes the compiled code accepts in "
                    f"dimension {dim} of input {name!r} (torch.export allows {low} to {high}; "
                    "AOTInductor's input check was not found in the generated code): this "
                    f"torch ({torch.__version__}) writes it differently than torchship reads")
            low = max(low, compiled.get("min", low))
            if "max" in compiled:
                high = compiled["max"] if high is None else min(high, compiled["max"])
            ranges[name][dim] = {"name": dim_name, "min": low, "max": high}
    return ranges


def _argument(name: str, value: Any) -> Dict[str, Any]:
    """How the package takes a forward argument: a tensor, a container of tensors (flattened,
    its structure fixed), or a constant torch.export baked in (its value, when JSON has one)."""
    if isinstance(value, torch.Tensor):
        return {"name": name, "kind": "tensor"}
    if _has_tensor(value):
        return {"name": name, "kind": "tensors"}
    argument = {"name": name, "kind": "constant"}
    if value is None or isinstance(value, (bool, int, float, str)):
        argument["value"] = value
    return argument


def _vec_isa(path: str) -> str:
    """AOTI_CPU_ISA of the compiled wrapper, as AOTInductor records it."""
    for text in _package_files(path, "_metadata.json"):
        isa = json.loads(text).get("AOTI_CPU_ISA")
        if isa is not None:
            return isa or INVALID_ISA
    return INVALID_ISA


def _check_target(target: str) -> None:
    if target not in CPU_TARGETS:
        raise ExportError(f"cpu_target must be one of {', '.join(CPU_TARGETS)}, got {target!r}")
    if target == "native":
        return
    if not _x86():
        raise ExportError(f"cpu_target={target!r} is an x86-64 baseline; this CPU is "
                          f"{platform.machine()}")
    missing = [name for name in _BASELINES[target] if name not in set(cpu_flags())]
    if missing:
        raise ExportError(f"cpu_target={target!r}: this CPU lacks {', '.join(missing)}; the "
                          "export runs the package on the golden cases, so it needs a CPU of "
                          "that baseline or above")


def _check_vectorized(isa: str, target: str) -> None:
    if isa != INVALID_ISA or target == "x86-64-v2" or not _x86() or "avx2" not in cpu_flags():
        return
    raise ExportError(
        "format='aoti': AOTInductor compiled scalar kernels (AOTI_CPU_ISA INVALID_VEC_ISA) on an "
        "x86-64 CPU with AVX2: its vector-ISA probe failed to build or load. Usually the C++ "
        "compile linked another libtorch than this torch's (docs/pitfalls.md, \"AOTInductor "
        "compiles scalar kernels\"), or a failed probe is cached in "
        f"{inductor_cache_dir()} (delete that folder and export again)")


def _add_golden(path: str, files: Dict[str, bytes]) -> str:
    """Appends the manifest and the golden vectors under the package's root folder; returns
    the root."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as archive:
        root = archive.namelist()[0].split("/", 1)[0]
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(f"{root}/{name}", (1980, 1, 1, 0, 0, 0)), data)
    return root


def export_aoti(module: torch.nn.Module, cases_inputs: List[Tuple[Any, ...]], path: str,
                manifest: Manifest, allow: Sequence[str], rtol: float, atol: Optional[float],
                cpu_target: str, static_batches: Optional[Sequence[int]] = None) -> ExportResult:
    """The format="aoti" half of torchship.export (its docstring says what is checked)."""
    if not available():
        raise ExportError(f"format='aoti' needs torch.export and AOTInductor (torch >= 2.6); "
                          f"this is torch {torch.__version__}")
    _check_target(cpu_target)
    timed = static_batches is None  # asked for by name: kept; by default: kept if faster
    static_batches = _check_static_batches(static_batches, manifest)
    findings = Findings()
    for finding in train_mode(module):
        findings.add(finding)
    module.eval()
    names = _argument_names(module, len(cases_inputs[0]))
    _refuse_varying_inputs(names, cases_inputs, manifest)
    example = cases_inputs[0]
    dynamic_shapes, dynamic_record, positions = _dynamic_shapes(names, example, manifest)
    # Compiled beside `path` and moved there once every check passed: a failed export leaves
    # neither a package without manifest nor a damaged older one.
    # (A folder of its own keeps the file name: the package's root folder is named after it.)
    folder, base = os.path.split(os.path.abspath(path))
    scratch = tempfile.mkdtemp(prefix=".torchship-export-", dir=folder)
    try:
        partial = os.path.join(scratch, base)
        result = _compile_and_check(module, cases_inputs, partial, manifest, allow, rtol, atol,
                                    cpu_target, names, example, dynamic_shapes, dynamic_record,
                                    positions, findings, static_batches, timed)
        os.replace(partial, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.path = path
    return result


def _compile_and_check(module: torch.nn.Module, cases_inputs: List[Tuple[Any, ...]], path: str,
                       manifest: Manifest, allow: Sequence[str], rtol: float,
                       atol: Optional[float], cpu_target: str, names: List[str],
                       example: Tuple[Any, ...], dynamic_shapes: Any,
                       dynamic_record: Dict[str, Any], positions: Dict[str, int],
                       findings: Findings, static_batches: Sequence[int],
                       timed: bool) -> ExportResult:
    """Exports, compiles into `path`, runs the golden cases, appends manifest and golden files."""
    notes: List[str] = []
    batched = sorted(positions[name] for name, dims in dynamic_record.items()
                     if dims.get("0") == "batch")
    if not batched:
        static_batches = []

    with torch.no_grad():
        expected = [module(*args) for args in cases_inputs]
        try:
            program = torch.export.export(module, example, dynamic_shapes=dynamic_shapes)
        except Exception as error:
            raise ExportError(f"torch.export cannot export {type(module).__name__}:\n"
                              f"{diagnose_export(error)}") from error
        specialized = {size: _static_program(module, example, dynamic_shapes, batched, size)
                       for size in static_batches}
        started = time.monotonic()
        with compiler_environment(cpu_target), _size_oblivious():
            # The exported program itself is compiled, with its ranges as exported.
            _compile_package(path, {"model": program, **{
                _static_model_name(size): static for size, static in specialized.items()}},
                             inductor_options(cpu_target))
        compile_seconds = time.monotonic() - started
        isa = _vec_isa(path)
        _check_vectorized(isa, cpu_target)
        dynamic_record = _record_ranges(dynamic_record, positions, example,
                                        _exported_ranges(program), _compiled_bounds(path))
        export_info = export_info_of("aoti", "torch.export")
        export_info.update({
            "cpu": {"target": cpu_target, "vec_isa": isa, "features": cpu_features(cpu_target)},
            "arguments": [_argument(name, value) for name, value in zip(names, example)],
            "dynamic_dims": dynamic_record,
        })
        notes.append(f"aoti: compiled in {compile_seconds:.0f} s for {cpu_target} "
                     f"(vector ISA {isa})" + (
                         f", with static batch size(s) {', '.join(map(str, static_batches))}"
                         if specialized else ""))

        # The compiled code checks its inputs' sizes only when this is set as it first runs;
        # C++ sets it, and the golden cases must pass the same checks here.
        checking = os.environ.get("AOTI_RUNTIME_CHECK_INPUTS")
        os.environ["AOTI_RUNTIME_CHECK_INPUTS"] = "1"
        try:
            compiled = torch._inductor.aoti_load_package(path)
            actual = []
            for number, args in enumerate(cases_inputs):
                try:
                    actual.append(compiled(*args))
                except Exception as error:
                    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                    raise ExportError(f"the compiled package fails on golden case {number}: "
                                      f"{first}") from error
            kept = _check_static_models(module, path, compiled, specialized, rtol, atol, timed,
                                        notes)
        finally:
            if checking is None:
                os.environ.pop("AOTI_RUNTIME_CHECK_INPUTS", None)
            else:
                os.environ["AOTI_RUNTIME_CHECK_INPUTS"] = checking

    max_errors, mismatches = compare_cases(expected, actual, rtol, atol, "compiled package")
    for number, mismatch in mismatches:
        if mismatch:
            raise ExportError(f"golden case {number}: the compiled package computes something "
                              f"else than the Python module ({mismatch})")

    if kept:
        export_info["static_batches"] = [
            {"batch": size, "model": _static_model_name(size), "arguments": batched}
            for size in kept]
    manifest_dict = manifest.to_dict(export_info, "fp32")
    settle_findings(findings, allow, module, stacklevel=6)
    files = {"extra/" + MANIFEST_FILE: json.dumps(manifest_dict, indent=2).encode()}
    files.update(_golden_files(list(zip(cases_inputs, actual)), rtol, atol))
    _add_golden(path, files)
    return ExportResult(path, compiled, manifest_dict, max_errors, findings.items, notes)


# Static batch sizes: with every size known, inductor prepacks convolution weights for oneDNN and
# picks kernels for those sizes, which it does not do for a dynamic batch (MobileNetV3 at batch
# 1: 0.62x the dynamic package's time). A package with a dynamic batch also holds a model
# compiled for each of these sizes; C++ runs it for a request of exactly that size.
DEFAULT_STATIC_BATCHES = (1,)


def _check_static_batches(sizes: Optional[Sequence[int]], manifest: Manifest) -> List[int]:
    if sizes is None:
        return list(DEFAULT_STATIC_BATCHES) if manifest.batch_dim else []
    sizes = list(sizes)
    wrong = [size for size in sizes
             if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= BATCH_MAX]
    if wrong:
        raise ExportError(f"static_batches: expected batch sizes from 1 to {BATCH_MAX}, got "
                          f"{wrong[0]!r}")
    if sizes and not manifest.batch_dim:
        raise ExportError("static_batches needs a batch dimension: pass manifest=Manifest(..., "
                          "batch_dim=True)")
    return sorted(set(sizes))


def _static_model_name(size: int) -> str:
    return f"batch_{size}"


def _rows(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """`size` rows of `tensor`'s batch, cycling through its rows when it has fewer."""
    index = torch.arange(size) % tensor.shape[0]
    return tensor.index_select(0, index.to(tensor.device)).contiguous()


def _static_program(module: torch.nn.Module, example: Tuple[Any, ...], dynamic_shapes: Any,
                    batched: List[int], size: int) -> Any:
    """The program exported with the batch dimension fixed at `size` (other free sizes stay
    dynamic), on the example's rows."""
    args = tuple(_rows(value, size) if index in batched else value
                 for index, value in enumerate(example))
    shapes = None
    if dynamic_shapes is not None:
        shapes = tuple(
            ({dim: d for dim, d in dims.items() if dim != 0} or None)
            if index in batched and dims else dims
            for index, dims in enumerate(dynamic_shapes))
    try:
        return torch.export.export(module, args, dynamic_shapes=shapes)
    except Exception as error:
        raise ExportError(f"torch.export cannot export {type(module).__name__} at the static "
                          f"batch size {size} (static_batches=() leaves it out):\n"
                          f"{diagnose_export(error)}") from error


def _compile_package(path: str, programs: Dict[str, Any], options: Dict[str, Any]) -> None:
    """Compiles each program and packages them under their names ("model" is the one a plain
    loader runs)."""
    if len(programs) == 1:
        torch._inductor.aoti_compile_and_package(programs["model"], package_path=path,
                                                 inductor_configs=options)
        return
    from torch._inductor.package import package_aoti
    files = {}
    for name, program in programs.items():
        try:
            graph = program.module(check_guards=False)
        except TypeError:  # before 2.9 the module had no guards to skip
            graph = program.module()
        args, kwargs = program.example_inputs
        files[name] = torch._inductor.aot_compile(
            graph, args, kwargs, options={**options, "aot_inductor.package": True})
    package_aoti(path, files)


KEEP_BELOW = 0.97  # by default a static model stays only below 97% of the dynamic one's time


def _best_ms(model: Any, args: Tuple[Any, ...], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        model(*args)
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


def _check_static_models(module: torch.nn.Module, path: str, dynamic: Any,
                         programs: Dict[int, Any], rtol: float, atol: Optional[float],
                         timed: bool, notes: List[str]) -> List[int]:
    """Each static model against the Python module on the rows it was exported with, then timed
    against the `dynamic` model on them (alternating rounds, the best run of each). When the
    sizes were torchship's default, those not 3% faster are removed from the package: a default
    must not slow a model down (ViT-B/16 ran 9% slower at static batch 1). Sizes asked for by
    name are kept. Returns the sizes kept."""
    from torch._inductor.package import load_package
    kept, dropped = [], []
    for size, program in programs.items():
        name = _static_model_name(size)
        args, _ = program.example_inputs
        expected = module(*args)
        try:
            static = load_package(path, name)
            actual = static(*args)
        except Exception as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ExportError(f"the package's model {name} fails on the example's rows: "
                              f"{first}") from error
        _, mismatches = compare_cases([expected], [actual], rtol, atol, f"compiled {name}")
        if mismatches[0][1]:
            raise ExportError(f"the package's model {name} computes something else than the "
                              f"Python module ({mismatches[0][1]})")
        dynamic_ms = static_ms = float("inf")
        for _ in range(3):  # the first round warms both up
            dynamic_ms = min(dynamic_ms, _best_ms(dynamic, args, 3))
            static_ms = min(static_ms, _best_ms(static, args, 3))
        keep = not timed or static_ms < KEEP_BELOW * dynamic_ms
        notes.append(f"aoti: static batch {size} {'kept' if keep else 'left out'}: "
                     f"{static_ms:.2f} ms against the dynamic model's {dynamic_ms:.2f} ms" +
                     ("" if timed else " (asked for by static_batches)"))
        (kept if keep else dropped).append(size)
    if dropped:
        _remove_models(path, [_static_model_name(size) for size in dropped])
    return kept


def _remove_models(path: str, names: List[str]) -> None:
    """Rewrites the package without the named models' folders."""
    folders = tuple(f"/data/aotinductor/{name}/" for name in names)
    partial = path + ".partial"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(partial, "w") as target:
        for info in source.infolist():
            if not any(folder in info.filename for folder in folders):
                target.writestr(info, source.read(info))
    os.replace(partial, path)
