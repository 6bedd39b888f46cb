"""Reduced precision at export: bf16 (autocast, traced into the graph) and int8 (FX post-training
quantization with fbgemm), and the report of what they cost against the fp32 module."""

import copy
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ..errors import first_line
from .submodules import capture_inputs, find_submodule
from ..tree import max_difference

PRECISIONS = ("fp32", "bf16", "int8")


def _floats_to_fp32(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_floats_to_fp32(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_floats_to_fp32(v) for v in value)
    if isinstance(value, dict):
        return {k: _floats_to_fp32(v) for k, v in value.items()}
    return value


class Bfloat16(torch.nn.Module):
    """Runs `module` under CPU autocast to bfloat16 and hands back fp32 outputs, so that callers
    see the archive's declared datatypes. Tracing it records the casts into the graph."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        # oneDNN's bf16 convolutions are fastest on channels-last activations.
        self.module = module.to(memory_format=torch.channels_last)

    def forward(self, *args):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.module(*args)
        return _floats_to_fp32(out)


def bf16_convolution_problem() -> Optional[str]:
    """Why this torch cannot run a bf16 convolution on this CPU, or None when it can. Seen: torch
    1.13's oneDNN has no bf16 convolution for CPUs without AVX-512 ("could not create a primitive
    descriptor iterator"); torch 2.x runs them on AVX2."""
    x = torch.ones(1, 1, 4, 4, dtype=torch.bfloat16)
    weight = torch.ones(1, 1, 3, 3, dtype=torch.bfloat16)
    try:
        with torch.no_grad():
            torch.nn.functional.conv2d(x, weight)
    except RuntimeError as error:
        return first_line(str(error), type(error).__name__)
    return None


def quantized_engine() -> str:
    """The int8 kernel library: x86 where this torch has it (2.x x86 wheels: fbgemm's
    quantization scheme, each layer run by fbgemm's or oneDNN's kernel, whichever suits its shape;
    ResNet34 int8 on 2 Zen cores: 4.9 ms against fbgemm's 6.9), else fbgemm, else oneDNN (x86
    builds without fbgemm, such as Debian's), else qnnpack (ARM)."""
    supported = torch.backends.quantized.supported_engines
    for engine in ("x86", "fbgemm", "onednn", "qnnpack"):
        if engine in supported:
            return engine
    raise RuntimeError(f"this torch has no quantized engine (supported: {supported})")


def quantize_int8(module: torch.nn.Module, target: str,
                  calibration: Sequence[Tuple[Any, ...]]) -> torch.nn.Module:
    """A copy of `module` whose submodule `target` ("" for the whole module) is quantized to int8
    by FX post-training static quantization for quantized_engine(): observers see
    `calibration` run through the whole pipeline, so pre-processing outside `target` stays in
    fp32."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    engine = quantized_engine()
    torch.backends.quantized.engine = engine
    mapping = get_default_qconfig_mapping(engine)
    quantized = copy.deepcopy(module).eval()
    if target:
        example = capture_inputs(quantized, [target], calibration[0])[target]
        parent, leaf = find_submodule(quantized, target)
        prepared = prepare_fx(getattr(parent, leaf), mapping, example)
        setattr(parent, leaf, prepared)
    else:
        quantized = prepare_fx(quantized, mapping, calibration[0])
        parent, leaf, prepared = None, "", quantized
    with torch.no_grad():
        for args in calibration:
            quantized(*args)
    converted = convert_fx(prepared)
    if parent is None:
        return converted
    setattr(parent, leaf, converted)
    return quantized


def _first_float_leaf(value: Any, ndim: Optional[int] = None) -> Optional[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and (ndim is None or value.dim() == ndim):
            return value
        return None
    items = value.values() if isinstance(value, dict) else \
        value if isinstance(value, (list, tuple)) else []
    for item in items:
        found = _first_float_leaf(item, ndim)
        if found is not None:
            return found
    return None


def _top1(output: Any, task: str) -> Optional[torch.Tensor]:
    """Class decisions: argmax over the last dimension of a classifier's logits, over the class
    dimension of a segmenter's B x C x H x W logits; None for other tasks."""
    if task == "classification":
        logits = _first_float_leaf(output)
        return None if logits is None or logits.dim() == 0 else logits.argmax(-1)
    if task == "segmentation":
        logits = _first_float_leaf(output, ndim=4)
        return None if logits is None else logits.argmax(1)
    return None


def reduced_precision_report(reference: List[Any], reduced: List[Any],
                             task: str) -> Dict[str, Any]:
    """How far the reduced-precision export is from the fp32 module on the golden cases."""
    max_errors: Dict[str, float] = {}
    agree = total = 0
    for want, got in zip(reference, reduced):
        for leaf, error in max_difference(want, got).items():
            max_errors[leaf] = max(max_errors.get(leaf, 0.0), error)
        want_top1, got_top1 = _top1(want, task), _top1(got, task)
        if want_top1 is not None and got_top1 is not None:
            agree += int((want_top1 == got_top1).sum())
            total += want_top1.numel()
    out: Dict[str, Any] = {"reference": "fp32 eager module", "cases": len(reference),
                           "max_abs_error": max_errors}
    if total:
        out["top1_agreement"] = agree / total
    return out
