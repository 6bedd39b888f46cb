"""torch.export's program to an OpenVINO model (openvino.convert_model), and a conversion that
fails read as the user needs it: which operator OpenVINO lacks, where the pipeline calls it, and
which format takes the pipeline instead."""

import re
from typing import Any, List, Optional

from ..doctor import user_line
from ..errors import ExportError, first_line

# OpenVINO names the operators it has no conversion for ("aten.linalg_svd.default", or the
# graph's node types), in messages that vary by release: every aten/prims/torchvision operator
# name in the message is a candidate, kept when the program calls it.
_OPERATOR = re.compile(r"\b((?:aten|prims|torchvision|quantized)[.:]+[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)")


def convert(program: Any) -> Any:
    """The ov.Model of `program`; ExportError naming the operator and the user's line when
    OpenVINO cannot convert it."""
    import openvino as ov
    try:
        model = ov.convert_model(program)
    except Exception as error:
        raise ExportError(conversion_refusal(program, str(error))) from None
    # A non-tensor argument (an int, a flag) is compiled in by torch.export, but OpenVINO still
    # makes it a parameter, of no shape and used by nothing: the IR takes the tensors only, as
    # the call spec's flat inputs do.
    for parameter in list(model.get_parameters()):
        if not parameter.output(0).get_target_inputs():
            model.remove_parameter(parameter)
    model.validate_nodes_and_infer_types()
    return model


def conversion_refusal(program: Any, message: str) -> str:
    """A few lines: the operator OpenVINO lacks, where the program calls it, what to do."""
    operators = _operators_named(program, message)
    lines = ["format='openvino': OpenVINO cannot convert "
             + (f"operator {', '.join(operators)}" if operators else "this program")
             + f" ({_reason(message)})"]
    for operator in operators:
        location, code = _call_site(program, operator)
        if location:
            lines.append(f"  {operator} is called at {location}" + (f": {code.strip()}"
                                                                       if code else ""))
    lines.append("  export it with format='aoti' or format='torchscript', which run every "
                 "PyTorch operator, or replace that call by operators OpenVINO supports")
    return "\n".join(lines)


def _reason(message: str) -> str:
    """OpenVINO's own words: its summary line where it has one ("No conversion rule found for
    operations: ..."), else its first line that is not a C++ source location."""
    summary = re.search(r"No conversion rule found for operations: [^\n]+", message)
    if summary:
        return summary.group(0)
    lines = [line for line in message.splitlines()
             if line.strip() and not line.startswith(("Exception from ", "Check "))]
    return first_line("\n".join(lines), "conversion failed")


def _base(name: str) -> str:
    """An operator's name without overload, namespace separator variants or the leading
    underscore of its decomposition (aten._linalg_svd.default -> aten.linalg_svd)."""
    parts = name.replace("::", ".").split(".")
    if len(parts) >= 3:
        parts = parts[:2]
    return ".".join([parts[0]] + [part.lstrip("_") for part in parts[1:]])


def _targets(program: Any) -> List[str]:
    return [str(node.target) for node in program.graph.nodes if node.op == "call_function"]


def _operators_named(program: Any, message: str) -> List[str]:
    """The program's operators that the message names, in the program's order."""
    named = {_base(name) for name in _OPERATOR.findall(message)}
    found: List[str] = []
    for target in _targets(program):
        base = target.rsplit(".", 1)[0]  # aten.linalg_svd.default -> aten.linalg_svd
        if _base(target) in named and base not in found:
            found.append(base)
    return found


def _call_site(program: Any, operator: str) -> tuple:
    """The user's line of the first node that calls `operator` ("file.py:12", code)."""
    for node in program.graph.nodes:
        if node.op == "call_function" and str(node.target).startswith(operator + "."):
            trace: Optional[str] = node.meta.get("stack_trace")
            if trace:
                return user_line(trace)
    return None, None
