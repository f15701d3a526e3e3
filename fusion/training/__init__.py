"""Training one run: the typed config, the trainer, loss and schedule, distributed set-up, the run log."""
