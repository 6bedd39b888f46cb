"""What torchship.export returns."""

from typing import Any, Dict, List, Optional

from .errors import Finding


class ExportResult:
    def __init__(self, path: str, module: Any, manifest: Dict[str, Any],
                 max_errors: Dict[str, float], findings: List[Finding], notes: List[str],
                 precision_report: Optional[Dict[str, Any]] = None):
        self.path = path
        self.module = module  # the TorchScript module, or the loaded .pt2 package
        self.manifest = manifest
        self.max_errors = max_errors  # per output leaf, exported vs eager, on every golden case
        self.findings = findings  # every check's findings, allowed and notes included
        self.notes = notes  # what the exporter decided (e.g. hybrid fallbacks)
        # bf16/int8 only: the reduced module against the fp32 one on the golden cases
        self.precision_report = precision_report

    def __repr__(self) -> str:
        worst = max(self.max_errors.values(), default=0.0)
        return f"ExportResult({self.path!r}, method={self.manifest['export']['method']!r}, " \
               f"max_error={worst:.3g})"
