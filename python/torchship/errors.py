"""What the exporter reports to its caller: ExportError when it refuses, a Finding of one of its
checks (torchship.checks), ExportWarning for a finding it accepted; and the first line of an
error message, the part of a long error that torchship's own messages quote."""

import os
import sys
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass
class Finding:
    id: str
    message: str
    fix: str
    location: Optional[str] = None
    fatal: bool = True

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"[{self.id}] {where}{self.message}\n  fix: {self.fix}"


class ExportError(RuntimeError):
    """The pipeline could not be exported, or the export does not compute what Python does."""

    def __init__(self, message: str, findings: Sequence[Finding] = ()):
        super().__init__(message)
        self.findings = list(findings)


class ManifestError(ExportError, ValueError):
    """A manifest that does not validate. Also a ValueError: what Manifest.validate raised before
    it raised torchship's own error."""


class ExportWarning(UserWarning):
    """A finding the export accepted (a note, or a check id passed in `allow`)."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def warn(message: str) -> None:
    """Warns "torchship.export: `message`" as an ExportWarning, reported at the caller of
    torchship.export: the innermost frame outside this package."""
    level, frame = 1, sys._getframe(0)
    while frame is not None and \
            os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _PACKAGE:
        level, frame = level + 1, frame.f_back
    warnings.warn(f"torchship.export: {message}", ExportWarning, stacklevel=level)


def first_line(text: str, default: str = "") -> str:
    """The first line of `text` that is not blank, stripped; `default` when there is none."""
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else default
