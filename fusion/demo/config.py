"""What `cli demo` makes and trains: every default once, read by its options' help."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pipeline.core.config_loading import setting

# The models the demo compares: the flagship, and baselines that pool the semantic tokens before anything sees
# where the object was when (so they cannot tell the directions apart from either cache).
MODELS = ("gasm_cast", "late_fusion", "semantic_only", "motion_only")
CACHES = ("frames", "mean")  # sampling.semantic_reduce of the two caches: every frame's map, and their average


@dataclass(frozen=True)
class DemoConfig:
    train: int = setting(384, "Synthetic training clips (a tenth of them held out to choose the epoch).", low=4)
    validation: int = setting(96, "Synthetic validation clips, the ones the table reports.", low=2)
    epochs: int = setting(30, "Training epochs of every model.", low=1)
    seed: int = setting(0, "Seed of the generated videos and of the models' weights.", low=0)
    frames: int = setting(4, "Frames each clip's semantic tokens keep (sampling.semantic_frames).", low=2)
    pool: int = setting(7, "Patch-grid pooling of each frame's 14x14 map (7: a 2x2 grid).", low=1)
    batch_size: int = setting(16, "Clips per optimizer step.", low=1)
    lr: float = setting(2e-3, "Peak learning rate.", low=0.0, low_open=True)

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The chain at the default backbones' real shapes (196 x 768 DINOv3-B patches, 8 x 512 I3D segments), random
# init: it shows the plumbing at full size, not learning (random-init features carry almost nothing). It
# extracts with the default sampling (frames and pool are the learning demo's only).
REAL_SHAPES = DemoConfig(train=48, validation=24, epochs=15, batch_size=8, lr=3e-4)

# Measured wall times, stated in --help and the README (the commands are in the README's demo section).
DEMO_TIME = "about 3 minutes on 2 CPU cores"
REAL_SHAPES_TIME = "about 8 minutes on 2 CPU cores"
