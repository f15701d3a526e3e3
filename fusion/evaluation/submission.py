"""The benchmarks' own files: the EPIC-KITCHENS-100 action-recognition challenge submission, and SSv2's public
test answers.

Submission format (epic-kitchens/C1-Action-Recognition, `utils/challenge.py`): a JSON object with "version"
"0.2", "challenge" "action_recognition", the supervision levels "sls_pt", "sls_tl", "sls_td" (0-5), and
"results": {narration_id: {"verb": {"0": score, ..., "96": score}, "noun": {"0": ..., "299": ...}}} holding the
raw class scores (the scorer applies its own softmax); zipped as `test.json` inside the archive.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.core import atomic
from pipeline.core.errors import UserError

if TYPE_CHECKING:  # torch is not imported here: `cli fuse-eval --help` reads the levels below
    import torch

SUBMISSION_VERSION = "0.2"
CHALLENGE = "action_recognition"
SLS_RANGE = (0, 5)
# The supervision levels a submission states (github.com/epic-kitchens/sls): what each is, and the official
# script's default.
SUPERVISION_LEVELS = {
    "pt": ("pretraining (0 none, 1 public images, 2 public images and video, 3 self-supervised public, ...)", 2),
    "tl": ("training labels (3: full temporal supervision, start/stop frames)", 3),
    "td": ("training data (3: the training set, 4: train + validation)", 4),
}


def epic_submission(
    verb_scores: torch.Tensor, noun_scores: torch.Tensor, narration_ids: list[str], sls: dict[str, int]
) -> dict[str, Any]:
    """sls: {"pt": pretraining, "tl": training labels, "td": training data} supervision levels."""
    results = {
        str(narration_id): {
            "verb": {str(c): float(s) for c, s in enumerate(verb.tolist())},
            "noun": {str(c): float(s) for c, s in enumerate(noun.tolist())},
        }
        for narration_id, verb, noun in zip(narration_ids, verb_scores.float(), noun_scores.float())
    }
    return {
        "version": SUBMISSION_VERSION,
        "challenge": CHALLENGE,
        **{f"sls_{key}": int(sls[key]) for key in SUPERVISION_LEVELS},
        "results": results,
    }


def write_submission(submission: dict[str, Any], path: Path) -> Path:
    """As `path` (JSON), or as the challenge expects it when `path` ends in .zip: test.json inside."""
    text = json.dumps(submission, allow_nan=False)
    if path.suffix.lower() == ".zip":
        with (
            atomic.atomic_path(path) as staging,
            zipfile.ZipFile(staging, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=5) as archive,
        ):
            archive.writestr("test.json", text)
    else:
        atomic.write_text(path, text)
    return path


def ssv2_answers(path: Path, clip_ids: np.ndarray, class_names: list[str]) -> np.ndarray:
    """Labels of `clip_ids` from SSv2's public test answers (`id;template` per line, templates as in
    labels.json), mapped to class ids by the cache's class names. Every clip must be answered, every template
    known: a test-set number over fewer clips than the split would not be the benchmark's."""
    if not path.is_file():
        raise UserError(f"--answers {path} does not exist (expected SSv2's test-answers.csv: id;template per line)")
    class_of = {name: i for i, name in enumerate(class_names)}
    if not class_of:
        raise UserError("--answers: the cache has no SSv2 class names (label_names) to map templates to")
    answers: dict[str, int] = {}
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle, delimiter=";"), start=1):
            if not row:
                continue
            if len(row) != 2:
                raise UserError(f"{path}: line {line}: expected id;template, got {';'.join(row)!r}")
            template = row[1].strip().replace("[", "").replace("]", "")
            if template not in class_of:
                raise UserError(f"{path}: line {line}: template {template!r} is not a class of the cache")
            answers[row[0].strip()] = class_of[template]
    missing = [str(c) for c in clip_ids if str(c) not in answers]
    if missing:
        raise UserError(f"--answers {path} has no answer for {len(missing)} clip(s) of the cache, e.g. "
                        f"{', '.join(missing[:5])}")  # fmt: skip
    return np.array([answers[str(c)] for c in clip_ids], dtype=np.int64)
