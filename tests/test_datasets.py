import json
import re
import shutil

import pytest
from conftest import real_epic_frames_root

from pipeline.core.errors import UserError
from pipeline.datasets import read_dataset


def test_synthetic_ssv2_labels_follow_templates(ssv2_root):
    clips = read_dataset("ssv2", ssv2_root, "train")
    names = json.loads((ssv2_root / "labels.json").read_text())
    entries = json.loads((ssv2_root / "train.json").read_text())
    assert len(clips) == len(entries) == 12
    for clip, entry in zip(clips.clips, entries):
        assert clip.clip_id == entry["id"]
        assert clip.labels["label"] == int(names[entry["template"].replace("[", "").replace("]", "")])
        assert clip.source.endswith(f"videos/{entry['id']}.webm")
    assert [c.labels["label"] for c in read_dataset("ssv2", ssv2_root, "test").clips] == [-1, -1]


def test_ssv2_alternative_names_and_folders(tmp_path, ssv2_root):
    (tmp_path / "annotations").mkdir()
    shutil.copy(ssv2_root / "labels.json", tmp_path / "annotations" / "something-something-v2-labels.json")
    shutil.copy(ssv2_root / "validation.json", tmp_path / "annotations" / "something-something-v2-validation.json")
    clip_id = json.loads((ssv2_root / "validation.json").read_text())[0]["id"]
    (tmp_path / f"{clip_id}.webm").write_bytes(b"x")
    clips = read_dataset("ssv2", tmp_path, "validation")
    assert clips.clips[0].source == str(tmp_path / f"{clip_id}.webm")


def test_ssv2_malformed_annotations(tmp_path, ssv2_root):
    shutil.copy(ssv2_root / "labels.json", tmp_path / "labels.json")
    (tmp_path / "train.json").write_text(json.dumps([{"id": "1", "template": "Juggling [something]"}]))
    with pytest.raises(
        UserError, match=r"train.json: entry 0 \(id 1\) has template 'Juggling something' not in labels.json"
    ):
        read_dataset("ssv2", tmp_path, "train")
    (tmp_path / "train.json").write_text("{not json")
    with pytest.raises(UserError, match="train.json: not valid JSON"):
        read_dataset("ssv2", tmp_path, "train")
    with pytest.raises(UserError, match="no validation.json found"):
        read_dataset("ssv2", tmp_path, "validation")
    with pytest.raises(UserError, match="unknown split"):
        read_dataset("ssv2", tmp_path, "val")


def test_synthetic_epic_segments_point_at_frames(epic_root):
    clips = read_dataset("epic100", epic_root, "validation")
    assert len(clips) == 5 and clips.label_fields == ("verb", "noun")
    first = clips.clips[0]
    assert first.is_frames and first.source.endswith("P02/rgb_frames/P02_01")
    assert (epic_root / "P02/rgb_frames/P02_01" / first.frame_template.format(first.start)).is_file()
    assert (epic_root / "P02/rgb_frames/P02_01" / first.frame_template.format(first.stop)).is_file()
    test = read_dataset("epic100", epic_root, "test")  # unlabelled, as the challenge's timestamps file
    header = (epic_root / "annotations" / "EPIC_100_test_timestamps.csv").read_text().splitlines()[0]
    assert header == "narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp," \
                     "start_frame,stop_frame"  # fmt: skip
    assert len(test) == 8 and {c.labels["verb"] for c in test.clips} == {-1}
    assert all(c.source.endswith("P03/rgb_frames/P03_01") for c in test.clips)


def test_epic_missing_column(tmp_path, epic_root):
    shutil.copytree(epic_root / "annotations", tmp_path / "annotations")
    path = tmp_path / "annotations" / "EPIC_100_train.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0].replace("verb_class", "verb_id")] + lines[1:]))
    with pytest.raises(UserError, match="EPIC_100_train.csv: missing column.*verb_class"):
        read_dataset("epic100", tmp_path, "train")


def test_manifest(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "classes.txt").write_text("open\nclose\npush\npull\n")
    (tmp_path / "clips.csv").write_text("path,label\na.mp4,3\n/abs/b.mp4\nc.mp4,close\nd.mp4,-1\n")
    clips = read_dataset("manifest", tmp_path / "clips.csv", "ignored", classes=tmp_path / "classes.txt")
    assert [c.labels["label"] for c in clips.clips] == [3, -1, 1, -1]
    assert clips.label_names == {"label": ["open", "close", "push", "pull"]}
    assert clips.clips[0].source == str(tmp_path / "a.mp4") and clips.clips[1].source == "/abs/b.mp4"
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("a.mp4\nc.mp4,\n")
    assert read_dataset("manifest", unlabelled, "x").label_names == {"label": []}


@pytest.mark.parametrize(
    ("rows", "classes", "words"),
    [
        ("a.mp4,3\n", False, "has labels but no class list: pass --classes FILE"),
        ("a.mp4,three\n", True, "line 1: label 'three' is not a class name from --classes"),
        ("a.mp4,three\n", False, "line 1: label 'three' is not an integer class id (or pass --classes FILE)"),
        ("a.mp4,-3\n", True, "line 1: label -3 is out of range (expected -1 for unlabelled, or 0..1)"),
        ("a.mp4,2\n", True, "line 1: label 2 is out of range"),
    ],
)
def test_manifest_labels_need_a_class_list(tmp_path, rows, classes, words):
    (tmp_path / "classes.txt").write_text("open\nclose\n")
    (tmp_path / "bad.csv").write_text(rows)
    with pytest.raises(UserError, match=re.escape(words)):
        read_dataset("manifest", tmp_path / "bad.csv", "x", classes=tmp_path / "classes.txt" if classes else None)


def test_epic_class_ids_must_be_in_the_class_lists(epic_root, tmp_path):
    shutil.copytree(epic_root, tmp_path / "e")
    path = next((tmp_path / "e").rglob("EPIC_100_validation.csv"))
    header, first, *rest = path.read_text().splitlines()
    columns = header.split(",")
    values = first.split(",")
    values[columns.index("noun_class")] = "-2"
    path.write_text("\n".join([header, ",".join(values), *rest]) + "\n")
    with pytest.raises(UserError, match="line 2: noun_class -2 is not a class id of EPIC_100_noun_classes.csv"):
        read_dataset("epic100", tmp_path / "e", "validation")


# --- real annotation files (skipped without REAL_FIXTURES) ---


def test_real_ssv2_annotations(real_fixtures):
    root = real_fixtures / "ssv2-annotations"
    validation = read_dataset("ssv2", root, "validation")
    assert len(validation) == 24777 and len(validation.label_names["label"]) == 174
    entries = json.loads((root / "validation.json").read_text())
    names = validation.label_names["label"]
    for clip, entry in list(zip(validation.clips, entries))[:500]:
        assert names[clip.labels["label"]] == entry["template"].replace("[", "").replace("]", "")
    test = read_dataset("ssv2", root, "test")
    assert len(test) == 27157 and {c.labels["label"] for c in test.clips} == {-1}
    # the public answers agree with the class names we look up
    answers = dict(line.split(";", 1) for line in (root / "test-answers.csv").read_text().splitlines()[:50])
    assert all(answer in names for answer in answers.values())


def test_real_ssv2_mini_labels(real_fixtures):
    clips = read_dataset("ssv2", real_fixtures / "ssv2-mini", "validation")
    names = json.loads((real_fixtures / "ssv2-mini" / "labels.json").read_text())
    for clip, entry in zip(clips.clips, json.loads((real_fixtures / "ssv2-mini" / "validation.json").read_text())):
        assert clip.labels["label"] == int(names[entry["label"]])


def test_real_epic_annotations(real_fixtures):
    root = real_fixtures / "epic100" / "annotations"
    clips = read_dataset("epic100", root, "validation")
    assert len(clips) == 9668
    assert len(clips.label_names["verb"]) == 97 and len(clips.label_names["noun"]) == 300
    first = clips.clips[0]  # P01_11_0: take plate, 00:00:00.00 - 00:00:01.89, no frames here -> the MP4 by time
    assert (first.clip_id, first.labels, first.start, first.stop) == ("P01_11_0", {"verb": 0, "noun": 2}, 0.0, 1.89)
    assert first.source.endswith("P01/videos/P01_11.MP4") and not first.is_frames
    test = read_dataset("epic100", root, "test")
    assert len(test) > 0 and {c.labels["verb"] for c in test.clips} == {-1}


def test_real_epic_frames_layout(real_fixtures, tmp_path):
    clips = read_dataset("epic100", real_epic_frames_root(real_fixtures, tmp_path), "validation")
    assert [c.is_frames for c in clips.clips] == [True, True]
    assert clips.clips[0].source.endswith("P28/rgb_frames/P28_101") and clips.clips[1].labels == {"verb": 0, "noun": 13}


@pytest.mark.parametrize(
    "entry, words",
    [
        ({"id": "..", "template": "Closing [something]"}, r"entry 0: id: '\.\.' is not a plain name"),
        ({"id": "/etc/passwd"}, r"entry 0: id: '/etc/passwd' is not a plain name"),
        ({"id": "a/../../b"}, r"entry 0: id: 'a/\.\./\.\./b' is not a plain name"),
        ({"id": None}, r"entry 0: id: expected a string or number, got NoneType None"),
        ({"id": "7", "template": None}, r"entry 0 \(id 7\): template must be a string, got None"),
    ],
)
def test_ssv2_entries_that_would_leave_the_data_root_or_are_not_strings_are_one_line(tmp_path, ssv2_root, entry,
                                                                                      words):  # fmt: skip
    shutil.copy(ssv2_root / "labels.json", tmp_path / "labels.json")
    (tmp_path / "train.json").write_text(json.dumps([entry]))
    with pytest.raises(UserError, match=words):
        read_dataset("ssv2", tmp_path, "train")


def test_a_clip_listed_twice_is_refused_naming_it(tmp_path, ssv2_root):
    shutil.copy(ssv2_root / "labels.json", tmp_path / "labels.json")
    (tmp_path / "train.json").write_text(json.dumps([{"id": "1"}, {"id": "2"}, {"id": 1}]))
    with pytest.raises(UserError, match=r"clip id '1' is listed twice \(entries 0 and 2\)"):
        read_dataset("ssv2", tmp_path, "train")


def test_manifest_relative_paths_stay_in_its_folder_and_absolute_ones_are_taken_as_given(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text(f"path\nclips/a.mp4\n{tmp_path / 'elsewhere.mp4'}\n")
    sources = [c.source for c in read_dataset("manifest", tmp_path / "data", "train").clips]
    assert sources == [str(tmp_path / "data" / "clips" / "a.mp4"), str(tmp_path / "elsewhere.mp4")]
    (tmp_path / "data" / "train.csv").write_text("path\nclips/../../escape.mp4\n")
    with pytest.raises(UserError, match=r"train.csv: line 2: 'clips/\.\./\.\./escape.mp4' is outside"):
        read_dataset("manifest", tmp_path / "data", "train")


def test_epic_ids_that_name_paths_are_refused(epic_root, tmp_path):
    root = shutil.copytree(epic_root, tmp_path / "epic")
    path = next(root.rglob("EPIC_100_train.csv"))
    lines = path.read_text().splitlines()
    first = lines[1].split(",")
    column = lines[0].split(",").index("participant_id")
    first[column] = "../P01"
    path.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    with pytest.raises(UserError, match=r"line 2: participant_id: '\.\./P01' is not a plain name"):
        read_dataset("epic100", root, "train")


@pytest.mark.parametrize(
    "clip_id, name", [("..", "clip"), (".", "clip"), ("../../x", "x"), (".hidden", "hidden"), ("a b/c:d", "c_d")]
)
def test_file_names_made_from_clip_ids_stay_inside_their_folder(clip_id, name):
    from pipeline.core.paths import safe_name

    assert safe_name(clip_id) == name
