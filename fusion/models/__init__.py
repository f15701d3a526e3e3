"""Fusion models: trunks and task heads on cached features, the registry by name, their config and checkpoints.
Imported by module (fusion.models.registry, .config, ...): the config is read by `cli --help` without torch."""
