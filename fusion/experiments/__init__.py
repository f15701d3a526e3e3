"""Experiments: sweeps of training runs over one cache, and reports that compare them."""
