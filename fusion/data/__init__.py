"""Cache-backed batches for training and evaluation: the cache reader, the holdout split, feature identity."""
