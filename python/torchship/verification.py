"""The exported model against the Python module: their outputs on the golden cases, compared by
the rule of torchship.tolerance."""

from typing import Any, Dict, List, Optional, Tuple

from .errors import ExportError
from .tree import first_mismatch, max_difference


def compare_cases(expected: List[Any], actual: List[Any], rtol: float, atol: Optional[float],
                  what: str) -> Tuple[Dict[str, float], List[Tuple[int, Optional[str]]]]:
    """The exported model's outputs on the golden cases against the eager module's: the largest
    |difference| per output leaf over all cases, and each case's first mismatch by the
    tolerance rule (None when it has none). A case whose output has another structure raises
    ExportError naming `what` was exported ("exported module", "compiled package")."""
    max_errors: Dict[str, float] = {}
    mismatches: List[Tuple[int, Optional[str]]] = []
    for number, (want, got) in enumerate(zip(expected, actual)):
        try:
            errors = max_difference(want, got)
        except ValueError as error:
            raise ExportError(f"golden case {number}: the {what} returns another "
                              f"structure than the Python module: {error}") from None
        for leaf, error in errors.items():
            max_errors[leaf] = max(max_errors.get(leaf, 0.0), error)
        mismatches.append((number, first_mismatch(want, got, rtol, atol)))
    return max_errors, mismatches
