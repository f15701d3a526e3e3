"""A synthetic feature cache in the real cache layout, whose labels need both streams.

Semantic tokens carry an object prototype in a few random patches (the appearance class). Motion tokens
carry the motion class, coded two ways:
- "content": a direction that ramps across the segments, so every segment states the class;
- "order": the same sequence of segment vectors for every class, in a class's own order (class 0 forward,
  class 1 reversed, others permuted): only a model that knows which segment comes when can tell them apart,
  as SSv2's "pushing left to right" from "right to left".
SSv2-style: label = appearance * motions + motion, so either stream alone caps accuracy at 1/motions or
1/appearances. EPIC-style: verb = motion, noun = appearance.
With `views` > 1 every clip has that many views, each its signal plus its own noise (as crops and temporal
offsets of one clip differ), so averaging their predictions beats any one of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.cache.layout import open_or_create
from pipeline.cache.writer import ShardWriter
from pipeline.core.defaults import MOTION_SHAPE, SEMANTIC_SHAPE
from pipeline.datasets.base import Clip, ClipList

CODES = ("content", "order")


def make_feature_cache(
    path: str | Path,
    clips: int,
    kind: str = "ssv2",
    semantic: tuple[int, int] = SEMANTIC_SHAPE,
    motion: tuple[int, int] = MOTION_SHAPE,
    appearances: int = 4,
    motions: int = 3,
    seed: int = 0,
    split: str = "train",
    shard_size: int = 64,
    signal: float = 1.5,
    failed_rows: tuple[int, ...] = (),
    code: str = "content",
    views: int = 1,
    frames: int = 1,
) -> Path:
    """Caches made with one `seed` share their classes; `split` draws different clips of them. `frames` > 1
    records the semantic tokens as that many frames' grids (a per-frame cache: `semantic[0]` is frames x patches)."""
    if code not in CODES:
        raise ValueError(f"code must be one of {', '.join(CODES)}, got {code!r}")
    classes = np.random.default_rng(seed)
    prototypes = classes.standard_normal((appearances, semantic[1])) * signal
    directions = classes.standard_normal((motions, motion[1])) * signal
    sequence = classes.standard_normal((motion[0], motion[1])) * signal
    orders = [np.arange(motion[0]), np.arange(motion[0])[::-1]] + [
        classes.permutation(motion[0]) for _ in range(2, motions)
    ]
    rng = np.random.default_rng([seed, sum(split.encode())])
    appearance = rng.integers(0, appearances, clips)
    movement = rng.integers(0, motions, clips)
    if kind == "ssv2":
        fields, labels = ("label",), [{"label": int(a * motions + m)} for a, m in zip(appearance, movement)]
        names = {"label": [f"object {a} moving {m}" for a in range(appearances) for m in range(motions)]}
    elif kind == "epic100":
        fields, labels = ("verb", "noun"), [{"verb": int(m), "noun": int(a)} for a, m in zip(appearance, movement)]
        names = {"verb": [f"move-{m}" for m in range(motions)], "noun": [f"object-{a}" for a in range(appearances)]}
    else:
        raise ValueError(f"kind must be ssv2 or epic100, got {kind!r}")
    clip_list = ClipList(
        kind, split, [Clip(f"{split}-{i:06d}", "synthetic", labels[i]) for i in range(clips)], fields, names
    )
    layout = {"views": {"spatial": 1, "temporal": views}} if views > 1 else {}
    backbones = {
        name: {"name": f"synthetic {name}", "tokens": shape[0], "dim": shape[1], "random_seed": seed, **layout}
        for name, shape in (("semantic", semantic), ("motion", motion))
    }
    if frames > 1:
        backbones["semantic"].update(reduce="frames", frames=frames)
    attrs = {
        "dataset": kind,
        "split": split,
        "backbones": backbones,
        "label_fields": list(fields),
        "label_names": names,
        "config": {"synthetic": {"seed": seed, "signal": signal, "code": code}},
        "created_with": {"package": "gasm-cast", "generator": "pipeline.synth.features"},
    }
    stored = {name: (shape[0] * views, shape[1]) for name, shape in (("semantic", semantic), ("motion", motion))}
    group = open_or_create(path, clip_list, shard_size, stored, attrs)
    writer = ShardWriter(path, group)
    ramp = np.linspace(-1.0, 1.0, motion[0])[:, None]
    for shard in range(-(-clips // shard_size)):
        lo, hi = writer.rows(shard)
        sem = rng.standard_normal((hi - lo, *semantic)).astype(np.float32)
        mot = rng.standard_normal((hi - lo, *motion)).astype(np.float32)
        noise = (sem.copy(), mot.copy()) if views > 1 else None
        failures = []
        for offset, row in enumerate(range(lo, hi)):
            patches = rng.choice(semantic[0], size=max(1, semantic[0] // 16), replace=False)
            sem[offset, patches] += prototypes[appearance[row]]
            if code == "order":
                mot[offset] += sequence[orders[movement[row]]]
            else:
                mot[offset] += ramp * directions[movement[row]]
            if row in failed_rows:
                sem[offset], mot[offset] = np.nan, np.nan
                failures.append(
                    {
                        "clip_id": f"{split}-{row:06d}",
                        "path": "synthetic",
                        "row": row,
                        "stage": "decode",
                        "error": "synthetic failure",
                    }
                )
        if noise is not None:  # the other views: the same signal, fresh noise; view-major along the tokens
            sem, mot = (np.concatenate([x] + [x - n + rng.standard_normal(x.shape).astype(np.float32)
                                              for _ in range(views - 1)], axis=1)
                        for x, n in ((sem, noise[0]), (mot, noise[1])))  # fmt: skip
        writer.write(shard, {"semantic": sem, "motion": mot}, failures)
    return Path(path)
