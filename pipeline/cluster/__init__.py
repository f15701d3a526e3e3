"""Running extraction as job arrays on the engines clusters already have (SLURM through submitit)."""
