"""The Zarr v3 feature cache: layout and creation, shard-aligned writing, inspection and verification."""
