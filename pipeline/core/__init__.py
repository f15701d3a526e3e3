"""The shared core below extraction and fusion: errors, configs and options, devices, paths,
progress, provenance, atomic outputs and folder locks, the command-line base.
"""
