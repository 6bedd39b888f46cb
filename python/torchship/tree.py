"""Python values <-> the JSON trees torchship uses for inputs, outputs and golden vectors.

Tensors are KServe v2 tensor objects; in archives their data lives in .npy extra files named by
an "npy" key instead of an inline "data" list. Tuples and lists are arrays, dicts and named
tuples are objects.
"""

import io
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

from .tolerance import scaled_atol

_DATATYPES = {
    torch.bool: "BOOL", torch.uint8: "UINT8", torch.int8: "INT8", torch.int16: "INT16",
    torch.int32: "INT32", torch.int64: "INT64", torch.float16: "FP16", torch.float32: "FP32",
    torch.float64: "FP64", torch.bfloat16: "BF16",
}
_DTYPES = {name: dtype for dtype, name in _DATATYPES.items()}


def datatype_name(dtype: torch.dtype) -> str:
    return _DATATYPES[dtype]


def npy_bytes(tensor: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, tensor.detach().cpu().contiguous().numpy(), allow_pickle=False)
    return buffer.getvalue()


def tensor_from_npy(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False).copy())


def to_tree(value: Any, store: Callable[[torch.Tensor], str],
            annotate: Optional[Callable[[torch.Tensor], Dict[str, Any]]] = None) -> Any:
    """`store` saves a tensor somewhere and returns the name its "npy" key records; `annotate`
    returns further keys for a tensor's node (a golden output's "atol")."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bfloat16:
            raise ValueError("golden vectors cannot store bfloat16 tensors as .npy")
        node = {"datatype": datatype_name(value.dtype), "shape": list(value.shape),
                "npy": store(value)}
        node.update(annotate(value) if annotate else {})
        return node
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {name: to_tree(item, store, annotate) for name, item in zip(value._fields, value)}
    if isinstance(value, (list, tuple)):
        return [to_tree(item, store, annotate) for item in value]
    if isinstance(value, dict):
        return {str(key): to_tree(item, store, annotate) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot record a value of type {type(value).__name__} in golden vectors")


def from_tree(tree: Any, load: Callable[[str], torch.Tensor]) -> Any:
    """Inverse of to_tree for comparison purposes: tuples come back as lists."""
    if isinstance(tree, dict) and "datatype" in tree and "shape" in tree:
        if "npy" in tree:
            return load(tree["npy"])
        dtype = _DTYPES[tree["datatype"]]
        return torch.tensor(tree["data"], dtype=dtype).reshape(tree["shape"])
    if isinstance(tree, list):
        return [from_tree(item, load) for item in tree]
    if isinstance(tree, dict):
        return {key: from_tree(item, load) for key, item in tree.items()}
    return tree


def max_difference(expected: Any, actual: Any, path: str = "output") -> Dict[str, float]:
    """Max abs difference per tensor leaf; raises ValueError when structures differ."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor):
            raise ValueError(f"{path}: expected a tensor, got {type(actual).__name__}")
        if expected.shape != actual.shape or expected.dtype != actual.dtype:
            raise ValueError(f"{path}: expected {expected.dtype} {list(expected.shape)}, "
                             f"got {actual.dtype} {list(actual.shape)}")
        if expected.numel() == 0:
            return {path: 0.0}
        diff = (expected.double() - actual.double()).abs()
        return {path: float(diff.max())}
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            raise ValueError(f"{path}: expected a sequence of {len(expected)}")
        names = getattr(expected, "_fields", None)
        out: Dict[str, float] = {}
        for i, (e, a) in enumerate(zip(expected, actual)):
            out.update(max_difference(e, a, f"{path}.{names[i]}" if names else f"{path}[{i}]"))
        return out
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(map(str, actual)) != set(map(str, expected)):
            raise ValueError(f"{path}: expected keys {sorted(map(str, expected))}")
        actual_by_name = {str(k): v for k, v in actual.items()}
        out = {}
        for key, item in expected.items():
            out.update(max_difference(item, actual_by_name[str(key)], f"{path}.{key}"))
        return out
    if expected != actual:
        raise ValueError(f"{path}: expected {expected!r}, got {actual!r}")
    return {}


def first_mismatch(expected: Any, actual: Any, rtol: float, atol: Optional[float],
                   path: str = "output") -> Optional[str]:
    """The first difference between `expected` and `actual`, described: another structure,
    length, key, shape, dtype or non-tensor value, else the first tensor leaf not close by the
    rule of torchship.tolerance (atol None: each tensor's scaled default); None when all are."""
    try:
        max_difference(expected, actual, path)
    except ValueError as error:
        return str(error)
    return _first_value_mismatch(expected, actual, rtol, atol, path)


def _first_value_mismatch(expected: Any, actual: Any, rtol: float, atol: Optional[float],
                          path: str) -> Optional[str]:
    """first_mismatch on trees of the same structure, shapes and dtypes."""
    if isinstance(expected, torch.Tensor):
        if expected.is_floating_point():
            leaf_atol = scaled_atol(rtol, expected) if atol is None else atol
            if not torch.allclose(actual.double(), expected.double(), rtol=rtol, atol=leaf_atol,
                                  equal_nan=True):
                diff = (actual.double() - expected.double()).abs().max()
                return f"{path}: max abs difference {float(diff):.3g}"
        elif not torch.equal(actual, expected):
            return f"{path}: values differ"
    elif isinstance(expected, (list, tuple)):
        for i, (e, a) in enumerate(zip(expected, actual)):
            found = _first_value_mismatch(e, a, rtol, atol, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(expected, dict):
        actual_by_name = {str(k): v for k, v in actual.items()}
        for key, value in expected.items():
            found = _first_value_mismatch(value, actual_by_name[str(key)], rtol, atol,
                                          f"{path}.{key}")
            if found:
                return found
    return None
