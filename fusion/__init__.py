"""Fusion models trained on cached features."""
