"""Weights updates: every archive records its weights index (.index), and
torchship.export_weights (.update) writes the weights of a retrained module as an update of an
archive exported before, which C++ applies to a loaded model without compiling anything."""

from .update import UPDATE_FILE, WeightsUpdateResult, export_weights

__all__ = ["export_weights", "WeightsUpdateResult", "UPDATE_FILE"]
