"""Predictions on videos: the complete model (backbones + fusion), clip lists, printed and JSON output."""
