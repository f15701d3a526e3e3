"""Evaluating a checkpoint: metrics (official EPIC breakdowns), benchmark files, per-class
analysis, attention maps.
"""
