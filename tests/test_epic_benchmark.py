"""EPIC-KITCHENS-100 evaluation equals the official scorer's on the same scores, the challenge file has the
documented format, and SSv2's public test answers map onto the test split."""

import csv
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from conftest import tiny_config
from epic_official import evaluate as official_evaluate
from PIL import Image

from cli import main
from fusion.training.command import run_training
from fusion.training.config import training_config
from fusion.training.request import TrainingRequest
from pipeline.datasets import DataSource
from pipeline.extract import run_extraction

ANNOTATION_FILES = ("EPIC_100_verb_classes.csv", "EPIC_100_noun_classes.csv", "EPIC_100_tail_verbs.csv",
                    "EPIC_100_tail_nouns.csv", "EPIC_100_unseen_participant_ids_validation.csv")  # fmt: skip


def real_rows(annotations: Path, count: int = 32) -> list[dict[str, str]]:
    """Real validation segments: half of unseen participants, and many with a tail verb or noun."""
    with (annotations / "EPIC_100_validation.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    unseen = {r["participant_id"] for r in csv.DictReader((annotations / ANNOTATION_FILES[4]).open())}
    tail_verbs = {r["verb"] for r in csv.DictReader((annotations / ANNOTATION_FILES[2]).open())}
    tail_nouns = {r["noun"] for r in csv.DictReader((annotations / ANNOTATION_FILES[3]).open())}
    picked = []
    for wanted_unseen in (True, False):
        group = [r for r in rows if (r["participant_id"] in unseen) == wanted_unseen]
        tail = [r for r in group if r["verb_class"] in tail_verbs or r["noun_class"] in tail_nouns]
        head = [r for r in group if r not in tail]
        picked += tail[: count // 4] + head[: count // 4]
    return picked


def write_epic(root: Path, annotations: Path, rows: list[dict[str, str]]) -> Path:
    """An EPIC-100 layout with those rows (ids, participants, videos, classes as they are) over synthetic frames:
    each segment gets 8 frames of its own colour, blocks and noise, so that their features differ."""
    (root / "annotations").mkdir(parents=True)
    for name in ANNOTATION_FILES:
        shutil.copy(annotations / name, root / "annotations" / name)
    rng = np.random.default_rng(0)
    next_frame: dict[str, int] = {}
    for row in rows:
        start = next_frame.get(row["video_id"], 1)
        next_frame[row["video_id"]] = start + 8
        row.update(start_frame=str(start), stop_frame=str(start + 7))
        folder = root / row["participant_id"] / "rgb_frames" / row["video_id"]
        folder.mkdir(parents=True, exist_ok=True)
        blocks = rng.integers(0, 256, (3, 4, 3)).repeat(16, axis=0).repeat(16, axis=1)
        for frame in range(start, start + 8):
            image = np.clip(blocks + rng.normal(0, 10, blocks.shape), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"frame_{frame:010d}.jpg")
    with (root / "annotations" / "EPIC_100_validation.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_epic_metrics_and_submission_equal_the_official_scorer_on_real_segments(real_fixtures, tmp_path):
    annotations = real_fixtures / "epic100" / "annotations"
    rows = real_rows(annotations)
    data = write_epic(tmp_path / "epic", annotations, rows)
    cache = tmp_path / "cache"
    run_extraction(DataSource("epic100", data, "validation"), cache, tiny_config(shard_size=8, batch_size=4))
    group = zarr.open_group(str(cache), mode="r")
    assert group["participant_id"][:].tolist() == [r["participant_id"] for r in rows]
    assert group["video_id"][:].tolist() == [r["video_id"] for r in rows]
    lists = group.attrs["official_lists"]
    assert lists["unseen_participants"] == ["P18", "P32"] and len(lists["tail_verbs"]) == 86
    # trained on the segments it is scored on, so that every breakdown has hits and misses to agree on
    overrides = {"epochs": 12, "device": "cpu", "data": {"batch_size": 8}, "optim": {"lr": 2e-3}}
    cfg = training_config("default", None, overrides)
    run_training(
        TrainingRequest(cache, cache, "gasm_cast_independent", tmp_path / "run", cfg, allow_same_clips=True), False
    )
    submission = tmp_path / "submission.zip"
    args = ["fuse-eval", "--checkpoint", tmp_path / "run" / "best.pt", "--cache", cache, "--submission", submission,
            "--analysis", tmp_path / "a", "--allow-training-clips"]  # fmt: skip
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.stdout)["metrics"]
    assert 0 < ours["tail_action_top1"] < 1 and 0 < ours["unseen_noun_top1"] < 1, ours
    with zipfile.ZipFile(submission) as archive:
        assert archive.namelist() == ["test.json"]
        sub = json.loads(archive.read("test.json"))
    assert {k: sub[k] for k in ("version", "challenge", "sls_pt", "sls_tl", "sls_td")} == {
        "version": "0.2", "challenge": "action_recognition", "sls_pt": 2, "sls_tl": 3, "sls_td": 4}  # fmt: skip
    ids = [r["narration_id"] for r in rows]
    assert list(sub["results"]) == ids
    for entry in sub["results"].values():
        assert list(entry["verb"]) == [str(i) for i in range(97)] and list(entry["noun"]) == [
            str(i) for i in range(300)
        ]
    verb = np.array([[entry["verb"][str(i)] for i in range(97)] for entry in sub["results"].values()])
    noun = np.array([[entry["noun"][str(i)] for i in range(300)] for entry in sub["results"].values()])
    official = official_evaluate(verb, noun, np.array([int(r["verb_class"]) for r in rows]),
                                 np.array([int(r["noun_class"]) for r in rows]),
                                 np.array([r["participant_id"] for r in rows]), lists["tail_verbs"],
                                 lists["tail_nouns"], lists["unseen_participants"])  # fmt: skip
    for task in ("verb", "noun", "action"):
        assert ours[f"{task}_top1"] == pytest.approx(official["all"][task][0], abs=1e-9)
        assert ours[f"{task}_top5"] == pytest.approx(official["all"][task][1], abs=1e-9)
        assert ours[f"unseen_{task}_top1"] == pytest.approx(official["unseen"][task][0], abs=1e-9)
        assert ours[f"tail_{task}_top1"] == pytest.approx(official["tail"][task][0], abs=1e-9)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["per_noun.csv", "per_verb.csv"]


def test_caches_without_participants_still_evaluate_and_say_why_breakdowns_are_missing(tmp_path):
    from pipeline.synth.features import make_feature_cache

    cache = make_feature_cache(tmp_path / "c", 40, "epic100", semantic=(16, 32), motion=(4, 16), shard_size=16)
    cfg = training_config("default", None, {"epochs": 1, "device": "cpu", "data": {"batch_size": 8}})
    run_training(TrainingRequest(cache, cache, "late_fusion", tmp_path / "run", cfg, allow_same_clips=True), False)
    predictions = tmp_path / "p.jsonl"
    args = ["fuse-eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--cache", str(cache), "--predictions",
            str(predictions), "--allow-training-clips"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "action_top1" in report["metrics"] and not any(k.startswith(("unseen", "tail")) for k in report["metrics"])
    assert any("unseen-participant top-1 unavailable" in note for note in report["notes"])
    record = json.loads(predictions.read_text().splitlines()[0])
    verb, noun = record["verb_top5"][0], record["noun_top5"][0]
    assert record["action_top5"][0] in {verb * 1000 + noun} | {v * 1000 + n for v in record["verb_top5"]
                                                               for n in record["noun_top5"]}  # fmt: skip


def test_ssv2_test_answers_cover_the_real_test_split(real_fixtures):
    from fusion.evaluation.submission import ssv2_answers
    from pipeline.datasets.ssv2 import read_label_names

    annotations = real_fixtures / "ssv2-annotations"
    ids = np.array([entry["id"] for entry in json.loads((annotations / "test.json").read_text())])
    labels = ssv2_answers(annotations / "test-answers.csv", ids, read_label_names(annotations))
    assert len(labels) == len(ids) == 27157 and labels.min() >= 0 and labels.max() < 174
    assert len(np.unique(labels)) == 174


def test_fuse_eval_scores_an_unlabelled_test_cache_with_answers_and_analyses_it(tmp_path):
    from pipeline.synth.features import make_feature_cache

    train = make_feature_cache(tmp_path / "t", 60, "ssv2", semantic=(16, 32), motion=(4, 16), shard_size=16)
    test = make_feature_cache(tmp_path / "x", 30, "ssv2", semantic=(16, 32), motion=(4, 16), split="test")
    group = zarr.open_group(str(test), mode="r+")
    truth = group["label"][:]
    names = group.attrs["label_names"]["label"]
    group["label"][:] = -1
    answers = tmp_path / "answers.csv"
    answers.write_text("".join(f"{c};{names[t]}\n" for c, t in zip(group["clip_id"][:], truth)))
    cfg = training_config("default", None, {"epochs": 1, "device": "cpu", "data": {"batch_size": 16}})
    run_training(TrainingRequest(train, train, "late_fusion", tmp_path / "run", cfg, allow_same_clips=True), False)
    args = ["fuse-eval", "--checkpoint", tmp_path / "run" / "best.pt", "--cache", test]
    unlabelled = json.loads(CliRunner().invoke(main, [str(a) for a in args]).stdout)
    assert unlabelled["metrics"] == {} and unlabelled["data"]["unlabelled"] == 30
    result = CliRunner().invoke(main, [str(a) for a in [*args, "--answers", answers, "--analysis", tmp_path / "a"]])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["data"]["evaluated"] == 30 and 0 <= report["metrics"]["top1"] <= 1
    per_class = list(csv.DictReader((tmp_path / "a" / "per_class.csv").open()))
    assert sum(int(r["clips"]) for r in per_class) == 30 and all(r["name"] in names for r in per_class)
    assert (tmp_path / "a" / "confusions.png").stat().st_size > 1000
    answers.write_text("".join(f"{c};{names[t]}\n" for c, t in list(zip(group["clip_id"][:], truth))[1:]))
    missing = CliRunner().invoke(main, [str(a) for a in [*args, "--answers", answers]])
    assert missing.exit_code == 2 and "has no answer for 1 clip(s)" in missing.output


def test_participants_survive_hdf5_round_trips_and_merges(epic_root, tmp_path, tiny):
    from pipeline.cache.hdf5 import export_hdf5, import_hdf5
    from pipeline.cache.merge import merge_caches

    for split in ("train", "validation"):
        run_extraction(DataSource("epic100", epic_root, split), tmp_path / split, tiny)
    export_hdf5(tmp_path / "validation", tmp_path / "v.h5")
    back = zarr.open_group(str(import_hdf5(tmp_path / "v.h5", tmp_path / "back")), mode="r")
    assert back["participant_id"][:].tolist() == ["P02"] * 5 and back.attrs["meta_fields"] == [
        "participant_id",
        "video_id",
    ]
    merged = zarr.open_group(str(merge_caches([tmp_path / "train", tmp_path / "validation"], tmp_path / "m")), mode="r")
    assert merged["participant_id"][:].tolist() == ["P01"] * 6 + ["P02"] * 5
    assert merged["video_id"][:].tolist() == ["P01_01"] * 6 + ["P02_01"] * 5
