"""Frozen-backbone feature extraction into a sharded Zarr cache."""
