"""Batches of cached features for training: read from the Zarr cache shard by shard, held in RAM when they
fit, else streamed with shuffling across shards. Dimensions, label fields and names come from the cache."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fusion.data.cache_spec import CacheSpec, with_time_axis
from fusion.data.holdout import HoldoutPart, stratified_holdout
from fusion.data.placement import MODE_TEXT, choose_mode
from fusion.data.read_ahead import read_ahead
from fusion.data.views import draw_views, fold_views, gather_rows
from pipeline.cache.layout import FEATURES, cache_views, open_cache, semantic_frames
from pipeline.cache.reader import check_finite, usable_rows
from pipeline.cache.shards import CacheShards
from pipeline.cache.stats import stats_problem
from pipeline.core.errors import UserError

if TYPE_CHECKING:
    from fusion.data.config import DataConfig

log = logging.getLogger(__name__)


class CacheData:
    """The usable rows of a cache (done, not failed, labelled) as batches {"semantic", "motion", labels..., "row"}.

    A cache with clips not extracted is refused unless `allow_partial`; `counts` says how many clips are used
    and why the others are not, for every metrics file. Feature rows with NaN/Inf are refused when read."""

    def __init__(
        self,
        path: str | Path,
        ram_limit_gb: float = 8.0,
        require_labels: bool = True,
        allow_partial: bool = False,
        holdout: HoldoutPart | None = None,
        part: tuple[int, int] = (0, 1),
        mode: str = "auto",
        device: torch.device | None = None,
    ):
        """`part` = (k, n): keep only the k-th of n contiguous parts of the usable rows (a process's share of
        a validation set); `counts` still describe the whole cache. `mode` (data.mode): where the features live
        while training on `device` (see `choose_mode`)."""
        self.path = Path(path)
        self.group = open_cache(self.path)
        attrs = dict(self.group.attrs)
        fields = tuple(attrs.get("label_fields") or [f for f in ("label", "verb", "noun") if f in self.group])
        self.labels = {f: self.group[f][:].astype(np.int64) for f in fields}
        self.clip_ids = self.group["clip_id"][:]
        # Per-clip strings (EPIC: participant_id, video_id) and the benchmark's official lists, where recorded.
        self.meta = {f: self.group[f][:] for f in attrs.get("meta_fields") or [] if f in self.group}
        self.official_lists = attrs.get("official_lists") or {}
        names = attrs.get("label_names") or {}
        views = cache_views(attrs)
        self.stored = {name: tuple(self.group[name].shape[1:]) for name in FEATURES}  # every view of a clip
        shapes = {name: (tokens // views, dim) for name, (tokens, dim) in self.stored.items()}
        self.spec = CacheSpec(
            str(self.path),
            shapes,
            fields,
            {f: self._label_size(f, names.get(f) or []) for f in fields},
            names,
            {
                key: attrs.get(key)
                for key in ("dataset", "split", "num_clips", "manifest_sha256", "created_with", "backbones")
            },
            semantic_frames(attrs),
            views,
        )
        self.rows, self.counts = usable_rows(self.path, self.group, self.labels, require_labels, allow_partial)
        self.held_out = 0  # clips of this cache's holdout (select_on holdout)
        if holdout is not None:
            held = stratified_holdout(self.rows, self.labels[fields[0]], holdout.fraction)
            if len(held) == 0:
                raise UserError(f"cache {self.path}: a holdout of {holdout.fraction} of each class is empty (too few "
                                "clips a class): raise data.holdout_fraction, or --select-on validation")  # fmt: skip
            self.rows = held if holdout.held else np.setdiff1d(self.rows, held, assume_unique=True)
            self.held_out = len(held)
        self.rows = np.array_split(self.rows, part[1])[part[0]]
        if self.counts.not_done:
            log.warning("cache %s is incomplete: %s (--allow-partial)", self.path, self.counts.describe())
        self.shards = CacheShards(self.path, self.group)
        self.shard_size = self.shards.shard_size
        stats = attrs.get("stats") or {}
        self.own_stats = True  # standardised with this cache's own statistics (until use_normalisation)
        self.norm = {
            name: (torch.tensor(stats[name]["mean"]), torch.tensor(stats[name]["std"]).clamp_min(1e-6))
            for name in FEATURES
            if name in stats
        }
        self._norm_on: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        device = device or torch.device("cpu")
        size = len(self.rows) * sum(t * d * 2 for t, d in self.stored.values())
        self.mode = choose_mode(mode, size, ram_limit_gb, device)
        self.in_ram = self.mode != "streamed"
        self.features: dict[str, Any] | None = self._load() if self.in_ram else None
        if self.mode == "device":  # float16 as stored; batches are gathered and converted on the device
            self.features = {name: torch.from_numpy(values).to(device) for name, values in self.features.items()}
        log.info("%s: %d usable clips, %s", self.path, len(self.rows), MODE_TEXT[self.mode])

    def __len__(self) -> int:
        return len(self.rows)

    def _label_size(self, field: str, names: list[str]) -> int:
        """Classes of a label field: its class names. Caches made before class lists were required may lack
        them; then the highest label seen is all there is, and a split missing the top class would differ."""
        if names:
            return len(names)
        if (self.labels[field] < 0).all():
            return 0  # an unlabelled cache without a class list: the model's checkpoint says how many
        size = int(self.labels[field].max()) + 1
        log.warning(
            "cache %s has no class names for '%s': taking %d classes from the highest label; re-extract it "
            "with its class list (--classes) to be sure every split agrees",
            self.path,
            field,
            size,
        )
        return size

    def _read_shard(self, shard: int, keep: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The usable rows of the shard (or `keep`, some of them, ascending) and their features: only those
        rows' chunks are read and decoded."""
        lo, hi = self.shards.rows(shard)
        if keep is None:
            keep = self.rows[np.searchsorted(self.rows, lo) : np.searchsorted(self.rows, hi)]
        if len(keep) == 0:
            return keep, {name: np.empty((0, *shape), np.float16) for name, shape in self.stored.items()}
        features = self.shards.read_shard(shard, None if len(keep) == hi - lo else keep - lo)
        check_finite(self.path, self.clip_ids, keep, features)
        return keep, features

    def _window_rows(self, shards: list[int]) -> np.ndarray:
        """The usable rows of several shards, shard after shard in the order given."""
        bounds = np.searchsorted(self.rows, np.arange(len(self.shards) + 1) * self.shard_size)
        return np.concatenate([self.rows[bounds[s] : bounds[s + 1]] for s in shards] or [self.rows[:0]])

    def _window(self, shards: list[int], rows: np.ndarray) -> dict[str, np.ndarray]:
        """Features of `rows` (usable rows of `shards`, grouped shard by shard in the order given, ascending in
        each), filled in place (the window is never twice in memory)."""
        sizes = np.bincount(rows // self.shard_size, minlength=len(self.shards))[shards].tolist()
        features = {name: np.empty((len(rows), *shape), np.float16) for name, shape in self.stored.items()}
        start = 0
        for shard, size in zip(shards, sizes):
            if size:
                part = self._read_shard(shard, rows[start : start + size])[1]
                for name in FEATURES:
                    features[name][start : start + size] = part[name]
            start += size
        return features

    def _load(self) -> dict[str, np.ndarray]:
        return self._window(list(range(len(self.shards))), self.rows)

    def _batch(self, rows: np.ndarray, features: dict[str, Any], views: int) -> dict[str, Any]:
        """`views`: how many of each clip's views `features` hold (1 or all of them)."""
        # device mode gathers tensors on the device; the other modes gather numpy rows on the host
        batch = {
            name: features[name]
            if isinstance(features[name], torch.Tensor)
            else torch.from_numpy(np.ascontiguousarray(features[name]))
            for name in FEATURES
        }
        batch.update({f: torch.from_numpy(values[rows]) for f, values in self.labels.items()})
        batch["row"] = torch.from_numpy(rows)
        batch["views"] = views
        return batch

    @functools.cached_property
    def _stale_stats(self) -> str | None:
        """Checked once, and only for a cache whose own statistics are used (the training cache)."""
        return stats_problem(self.path, self.group)

    def normalisation(self) -> dict[str, dict[str, list[float]]]:
        """The per-channel statistics features are standardised with, as plain lists (for checkpoints); refused
        when they are the cache's own and no longer describe it."""
        if self.own_stats and self._stale_stats:
            raise UserError(self._stale_stats)
        return {name: {"mean": mean.tolist(), "std": std.tolist()} for name, (mean, std) in self.norm.items()}

    def use_normalisation(self, stats: dict[str, dict[str, list[float]]]) -> None:
        """Standardise with a model's training statistics, not this cache's own: a model must see every cache
        the way it saw its training cache."""
        self.norm = {
            name: (torch.tensor(values["mean"]), torch.tensor(values["std"]).clamp_min(1e-6))
            for name, values in stats.items()
        }
        self._norm_on, self.own_stats = {}, False

    def normalise(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, D] float -> per-channel standardised with the cache's stats (if `cli cache stats` ran)."""
        if name not in self.norm:
            return x
        key = (name, str(x.device))
        if key not in self._norm_on:  # on each device once, not every step; as x * scale + shift: one pass
            mean, std = (t.to(x.device) for t in self.norm[name])
            self._norm_on[key] = (1 / std, -mean / std)
        scale, shift = self._norm_on[key]
        return torch.addcmul(shift, x, scale)

    def model_inputs(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        """float16 features of a batch -> normalised float32 on `device` (pinned, non-blocking copies to a GPU):
        semantic [B', Ns, Ds] (a `frames` cache: [B', F, Ns / F, Ds]), motion [B', Nm, Dm]; B' = B, or B x V
        for a batch of all V views of its clips (batch["views"]), each clip's views one after another."""
        out = {}
        for name in FEATURES:
            x = batch[name]
            if device.type == "cuda" and x.device.type == "cpu":
                x = x.pin_memory()
            x = fold_views(x.to(device, non_blocking=True), batch.get("views", 1))
            out[name] = self.normalise(name, x.float())  # to float on the device
        out["semantic"] = with_time_axis(out["semantic"], self.spec.semantic_frames)
        return out

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        shuffle_shards: int = 8,
        rank: int = 0,
        world: int = 1,
        skip: int = 0,
        views: str = "all",
    ) -> Iterator[dict[str, Any]]:
        """Yield batches in cache order, or shuffled (across all rows in RAM; across windows of shards when streaming).

        With `world` > 1 every process draws the same global batches and keeps its contiguous part `rank` of each
        (a distributed sampler that keeps the global order of a single process); "global_size" tells the whole
        and "share" this part's weight in the global mean. Streaming, a process reads only the rows of its parts.
        The first `skip` batches (resuming mid-epoch) are drawn but neither read nor yielded. `views` of a
        multi-view cache: "all" (each batch holds every view of its clips, "views" says how many), or one view per
        clip, "first" or "random" (drawn with `generator` for the whole window, skipped batches included).
        """
        plans = []
        for shards, rows in self._windows(shuffle, generator, shuffle_shards):
            order = torch.randperm(len(rows), generator=generator).numpy() if shuffle else np.arange(len(rows))
            picks = draw_views(len(rows), self.spec.views, views, generator)
            starts = range(0, len(order), batch_size)
            parts = [_part(order[start : start + batch_size], rank, world) for start in starts]
            skipped, skip = min(skip, len(parts)), skip - min(skip, len(parts))
            if parts[skipped:]:
                plans.append((shards, rows, parts[skipped:], picks))
        # The next window's share is read and decompressed by a background thread while this one trains.
        windows = [(self.features, None)] if self.in_ram else read_ahead(self._share, plans)
        for (_, rows, parts, picks), (features, held) in zip(plans, windows):
            for idx, size, share in parts:
                at = idx if held is None else np.searchsorted(held, idx)  # positions in the rows read
                chosen = None if picks is None else picks[idx]
                kept = self.spec.views if chosen is None else 1
                gathered = {name: gather_rows(features[name], at, self.spec.views, chosen) for name in FEATURES}
                yield {**self._batch(rows[idx], gathered, kept), "global_size": size, "share": share}

    def _share(self, plan: tuple[list[int], np.ndarray, list[tuple[np.ndarray, int, float]], Any]) -> tuple[Any, Any]:
        """A streamed window's features for the rows this process's parts use, and those rows' positions in the
        window (ascending)."""
        shards, rows, parts, _ = plan
        held = np.unique(np.concatenate([idx for idx, _, _ in parts])) if parts else np.arange(0)
        return self._window(shards, rows[held]), held

    def _windows(
        self, shuffle: bool, generator: torch.Generator | None, shuffle_shards: int
    ) -> list[tuple[list[int] | None, np.ndarray]]:
        """(shards, usable rows): everything at once when in RAM; else windows of `shuffle_shards` shards, in
        shuffled order if asked."""
        if self.in_ram:
            return [(None, self.rows)]
        shards = list(range(len(self.shards)))
        if shuffle:
            shards = [shards[i] for i in torch.randperm(len(shards), generator=generator).tolist()]
        windows = [shards[w : w + shuffle_shards] for w in range(0, len(shards), shuffle_shards)]
        return [(window, self._window_rows(window)) for window in windows]


def _part(idx: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, int, float]:
    """This process's contiguous part of a global batch, the global batch's size, and the part's weight.

    A last global batch with fewer rows than processes leaves some parts empty: those take the batch's last row
    with weight 0, so every process runs the same steps (DDP needs every backward) and no loss is NaN."""
    if world == 1:
        return idx, len(idx), 1.0
    part = np.array_split(idx, world)[rank]
    if len(part) == 0:
        return idx[-1:], len(idx), 0.0
    return part, len(idx), len(part) / len(idx)


def open_caches(
    cache: str | Path,
    val_cache: str | Path,
    data: DataConfig,
    device: torch.device,
    allow_partial: bool = False,
    share: tuple[int, int] = (0, 1),
) -> tuple[CacheData, CacheData, CacheData]:
    """The training data, this process's `share` (k, n) of the validation cache, and of the clips that select
    (the training cache's holdout, or the validation cache itself), where `data.mode` puts them for training on
    `device`; all standardised with the training cache's statistics."""
    options = {"allow_partial": allow_partial, "mode": data.mode, "device": device}
    holdout = data.select_on == "holdout"
    train = CacheData(cache, data.ram_limit_gb, holdout=HoldoutPart(data.holdout_fraction, False) if holdout else None,
                      **options)  # fmt: skip
    val = CacheData(val_cache, data.ram_limit_gb, part=share, **options)
    val.use_normalisation(train.normalisation())
    if not holdout:
        return train, val, val
    select = CacheData(
        cache, data.ram_limit_gb, part=share, holdout=HoldoutPart(data.holdout_fraction, True), **options
    )
    select.use_normalisation(train.normalisation())
    return train, val, select
