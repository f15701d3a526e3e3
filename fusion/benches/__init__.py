"""Benches that print tables: fusion models, the loader, sweeps, and the GPU check that runs them all."""
