"""Which features a model sees, identified by the cache's backbone provenance (model, weights sha256 or random
seed, layer, frames, reduction, resize, precision) and shapes: a model is never trained on one kind of features
and validated, evaluated or compared on another without the user saying so."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.core.config_loading import leaf_differences
from pipeline.core.errors import UserError

log = logging.getLogger(__name__)
OVERRIDE = "--allow-other-features"


def identity(provenance: dict[str, Any]) -> dict[str, Any]:
    """The identifying part of a cache's provenance: its backbones as extracted. A weights file is named by its
    sha256 (its path may differ between machines); a hub id without a checksum by the id. Views are not part of
    it: more views of a clip are more of the same features, and a model reads one at a time."""
    return {
        kind: {
            key: value
            for key, value in spec.items()
            if not (key == "weights" and spec.get("weights_sha256")) and key != "views"
        }  # fmt: skip
        for kind, spec in sorted((provenance.get("backbones") or {}).items())
    }


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return leaf_differences(identity(a), identity(b))


def backbone_names(a: dict[str, Any], b: dict[str, Any], found: list[str]) -> str:
    """The backbones of each stream that differs, by name ('semantic: dinov3_vitb16 -> dinov3_vitl16'), so a
    refusal says what made the features before the fields that differ."""
    kinds = dict.fromkeys(line.split(".")[0].split(":")[0] for line in found)

    def name(provenance: dict[str, Any], kind: str) -> Any:
        return ((provenance.get("backbones") or {}).get(kind) or {}).get("name")

    return "; ".join(f"{kind}: {name(a, kind)} -> {name(b, kind)}" for kind in kinds)


def check_same_features(first: str, a: dict[str, Any], second: str, b: dict[str, Any], allow: bool) -> list[str]:
    """Refuse (one line, naming the differences) unless `allow`; returns the differences allowed, to record."""
    found = differences(a, b)
    if found and not allow:
        shown = "; ".join(found[:4]) + (f"; and {len(found) - 4} more" if len(found) > 4 else "")
        raise UserError(f"{second} holds other features than {first} ({backbone_names(a, b, found)}; {shown}): "
                        f"numbers across them are not comparable; {OVERRIDE} uses them anyway, recorded in the "
                        "outputs")  # fmt: skip
    if found:
        log.warning("%s holds other features than %s (%s): allowed by %s", second, first, "; ".join(found), OVERRIDE)
    return found


# What names a cache's clips, whatever its path: the same dataset, split and ordered clip list.
CLIP_KEYS = ("dataset", "split", "manifest_sha256")


def clip_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [f"{key}: {a.get(key)!r} -> {b.get(key)!r}" for key in CLIP_KEYS if a.get(key) != b.get(key)]


def same_clips(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two caches list the same clips of the same split (the same clip list, whatever their paths)."""
    return all(a.get(key) is not None for key in CLIP_KEYS) and not clip_differences(a, b)


def refuse_same_cache(train: Path, val: Path, train_prov: dict[str, Any], val_prov: dict[str, Any]) -> None:
    if Path(train).resolve() == Path(val).resolve() or same_clips(train_prov, val_prov):
        raise UserError(f"--val-cache {val} holds the same clips as --cache {train}: validate on clips the model "
                        "is not trained on")  # fmt: skip
