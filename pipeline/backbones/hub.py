"""Weights saved by `transformers` (a local folder or a Hugging Face hub id): their architecture read from
config.json, and loading them with one clear line when they cannot be had."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from pipeline.core.errors import UserError


def _hub_cached(repo: str, filename: str = "config.json") -> str | None:
    """The local copy of a hub repository's file, or None (not downloaded, or not a repository id)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, filename)
    except ValueError:  # not a repository id at all
        return None
    return found if isinstance(found, str) else None


def _hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached from here (offline mode, no route to it), or None."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as exc:
        return f"the hub ({host}) is unreachable from here ({exc})"
    return None


def saved_config(weights: str) -> dict[str, Any] | None:
    """config.json of weights saved by transformers (a folder, or a hub id already downloaded), or None when it
    is not here (a hub id to download: its architecture is then the variant's published one, checked on load)."""
    path = Path(weights) / "config.json" if Path(weights).is_dir() else _hub_cached(weights)
    if path is None or not Path(path).is_file():
        return None
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"weights {weights}: config.json is unreadable ({exc})") from None
    if not isinstance(config, dict):
        raise UserError(f"weights {weights}: config.json is not a JSON object")
    return config


def architecture(weights: str | None, published: dict[str, Any], what: str) -> dict[str, Any]:
    """The architecture of `weights` as the keys of `published` (the variant's own config) name it: read from
    their config.json where it is here, else `published`."""
    config = saved_config(weights) if weights else None
    if config is None:
        return dict(published)
    missing = [key for key in published if key not in config]
    if missing:
        raise UserError(f"weights {weights}: config.json has no {', '.join(missing)} (is it a {what} model?)")
    return {key: config[key] for key in published}


def load_pretrained(model_class: type, source: str, what: str, option: str) -> torch.nn.Module:
    """`model_class.from_pretrained(source)`, or one line saying why it cannot be loaded and what to pass."""
    try:
        if not Path(source).exists() and _hub_cached(source) is None:
            # Checked first: offline, from_pretrained would retry for about a minute before failing.
            problem = _hub_unreachable()
            if problem:
                raise OSError(f"not in the local Hugging Face cache, and {problem}")
        return model_class.from_pretrained(source)
    except OSError as exc:
        raise UserError(
            f"could not load {what} weights from '{source}': {exc}. Pass {option} with a local directory "
            "holding config.json and model.safetensors, or --random-init."
        ) from None
