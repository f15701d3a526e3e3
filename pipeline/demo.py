"""`cli demo`: the main job end to end on a generated dataset with random-init backbones, on a CPU."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from pipeline.cache.inspect import verify_cache
from pipeline.cli_support import print_info, run_extract_command
from pipeline.errors import UserError
from pipeline.extract_config import ExtractConfig


def run_demo(out: Path, clips: int) -> None:
    from pipeline.cache.inspect import cache_info
    from pipeline.synth.ssv2 import make_ssv2

    console = Console()
    data = out / "ssv2-synthetic"
    if not (data / "labels.json").exists():
        console.rule(f"1. synth: {clips} train + {clips} validation clips -> {data}")
        make_ssv2(data, train=clips, validation=clips, test=0)
    cfg = ExtractConfig()
    cfg.backbones.random_init = True
    cfg.run.shard_size = 8
    for split in ("train", "validation"):
        cache = out / "cache" / f"ssv2-{split}"
        console.rule(f"2. extract {split} (DINOv3 ViT-B/16 + I3D-R50 res3, random init) -> {cache}")
        run_extract_command("ssv2", data, split, cache, cfg, (0, 1), None, progress=True)
        console.rule(f"3. verify {cache}")
        problems = verify_cache(cache)
        if problems:
            raise UserError(f"demo cache {cache} has {len(problems)} problem clip(s): {problems[:3]}")
        print_info(cache_info(cache))
    console.print(f"demo finished: caches in {out / 'cache'}")
