"""Weights updates above the formats: the archive exported before, read back (.base_archive),
and the update's writer (.update); torchship.export_weights (torchship.export) gives it each
format's prover. The weights index every archive records is torchship.weights_index."""

from .update import UPDATE_FILE, WeightsUpdateResult, write_update

__all__ = ["write_update", "WeightsUpdateResult", "UPDATE_FILE"]
