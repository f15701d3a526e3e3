"""`cli demo`: a first run that shows learning in minutes (learning.py), or the chain at the default backbones'
real shapes (real_shapes.py). Imported by module, so the CLI's help loads neither."""
