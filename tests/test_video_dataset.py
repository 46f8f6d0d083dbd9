"""The video-folder data source: class folders or a CSV, and the seeded group-disjoint split."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmfc.config import ConfigError, DataConfig
from mmfc.data.sources import describe_selection
from mmfc.data.video_dataset import VideoFolderSource
from mmfc.errors import DataError


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # listing never decodes; stage 0 does
    return path


def ucf_like(root: Path, classes=("Archery", "Biking", "Diving"), groups=12, clips=2) -> Path:
    for name in classes:
        for g in range(1, groups + 1):
            for c in range(1, clips + 1):
                touch(root / name / f"v_{name}_g{g:02d}_c{c:02d}.avi")
    return root


def config(root: Path, **kw) -> DataConfig:
    return DataConfig(source="videos", root=str(root), layout="coco17", **{"num_classes": 3, **kw})


def test_class_folders(tmp_path: Path):
    root = ucf_like(tmp_path / "ucf")
    touch(root / "Biking" / "notes.txt")
    source = VideoFolderSource(config(root, group_pattern=r"_g(\d+)_"))
    samples = source.samples()
    assert source.class_names == ["Archery", "Biking", "Diving"] and source.num_classes == 3
    assert len(samples) == 3 * 12 * 2
    first = min(samples, key=lambda s: s.id)
    assert first.id == "Archery/v_Archery_g01_c01" and first.label == 0 and first.group == "01"
    assert first.video_path == root / "Archery" / "v_Archery_g01_c01.avi"
    assert source.excluded == {"not a video file (extension not in data.video_exts): .txt": 1}
    with pytest.raises(ConfigError, match="set data.num_classes = 3"):
        VideoFolderSource(config(root, num_classes=60))
    with pytest.raises(DataError, match="no such video folder"):
        VideoFolderSource(config(tmp_path / "absent"))


def test_the_split_is_seeded_and_group_disjoint(tmp_path: Path):
    root = ucf_like(tmp_path / "ucf", groups=25)
    cfg = config(root, group_pattern=r"_g(\d+)_", test_fraction=0.2, val_fraction=0.25)
    samples = VideoFolderSource(cfg).samples()
    sides: dict[str, set[str]] = {}
    for s in samples:
        sides.setdefault(s.group, set()).add(s.split)
    assert all(len(v) == 1 for v in sides.values())  # every group on one side only
    counts = {split: sum(s.split == split for s in samples) for split in ("train", "val", "test")}
    assert all(counts.values()) and counts["train"] > counts["val"] and counts["train"] > counts["test"]
    again = VideoFolderSource(cfg).samples()
    assert [s.split for s in again] == [s.split for s in samples]
    other = VideoFolderSource(config(root, group_pattern=r"_g(\d+)_", test_fraction=0.2, val_fraction=0.25, val_seed=7))
    assert [s.split for s in other.samples()] != [s.split for s in samples]
    # Without a pattern each clip is its own group, so the two clips of a group may part.
    alone = VideoFolderSource(config(root, test_fraction=0.5)).samples()
    assert len({s.group for s in alone}) == len(alone)


def test_clips_without_a_group_are_kept_and_counted_apart_from_the_excluded(tmp_path: Path):
    root = ucf_like(tmp_path / "ucf", groups=3)
    touch(root / "Diving" / "my_own_dive.avi")  # no _gNN_ in the name
    source = VideoFolderSource(config(root, group_pattern=r"_g(\d+)_"))
    assert "Diving/my_own_dive" in {s.id for s in source.samples()}
    assert source.excluded == {}
    summary = describe_selection(config(root, group_pattern=r"_g(\d+)_"))
    assert summary["samples"] == 3 * 3 * 2 + 1 and summary["excluded"] == {}
    assert summary["notes"] == {"no group in the file name (data.group_pattern found nothing): its own group": 1}


def test_csv_with_splits_groups_and_missing_files(tmp_path: Path):
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4", "sub/e.mp4"):
        touch(tmp_path / "clips" / name)
    (tmp_path / "clips" / "list.csv").write_text(
        "path,label,split,group\n"
        "a.mp4,walk,train,p1\nb.mp4,run,train,p2\nc.mp4,walk,test,p3\nsub/e.mp4,run,val,p4\n"
        "gone.mp4,run,train,p5\n" + f"{tmp_path / 'clips' / 'd.mp4'},walk,test,p6\n"
    )
    source = VideoFolderSource(config(tmp_path / "clips" / "list.csv", num_classes=2))
    by_id = {s.id: s for s in source.samples()}
    assert source.class_names == ["run", "walk"]
    assert {i: (s.label, s.split, s.group) for i, s in by_id.items()} == {
        "a": (1, "train", "p1"), "b": (0, "train", "p2"), "c": (1, "test", "p3"),
        "sub/e": (0, "val", "p4"), "d": (1, "test", "p6"),
    }
    assert source.excluded == {"video file missing": 1}


def test_csv_without_val_carves_it_from_training_groups(tmp_path: Path):
    rows = ["path,label,split,group"]
    for k in range(40):
        touch(tmp_path / f"{k}.mp4")
        rows.append(f"{k}.mp4,{'ab'[k % 2]},{'test' if k < 10 else 'train'},person{k // 2}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    samples = VideoFolderSource(config(tmp_path / "list.csv", num_classes=2, val_fraction=0.3)).samples()
    assert {s.split for s in samples if int(s.id) < 10} == {"test"}  # the CSV's test stays test
    val = {s.group for s in samples if s.split == "val"}
    train = {s.group for s in samples if s.split == "train"}
    assert val and train and not val & train


@pytest.mark.parametrize("text,message", [
    ("file,label\nx.mp4,a\n", "header must name path,label"),
    ("path,label,camera\nx.mp4,a,1\n", "unknown CSV column 'camera'"),
    ("path,label,split\nx.mp4,a,holdout\n", "line 2: split 'holdout'"),
    ("path,label\nx.mp4,\n", "line 2: no label"),
    ("path,label\nmissing.mp4,a\n", "lists no video that exists"),
])
def test_bad_csv_names_the_file_and_reason(tmp_path: Path, text: str, message: str):
    touch(tmp_path / "x.mp4")
    (tmp_path / "list.csv").write_text(text)
    with pytest.raises(DataError, match=message) as err:
        VideoFolderSource(config(tmp_path / "list.csv", num_classes=1))
    assert err.value.path.endswith("list.csv")


def test_skeletons_need_stage_0_and_info_counts(tmp_path: Path):
    root = ucf_like(tmp_path / "ucf", groups=3, clips=1)
    cfg = config(root, poses=str(tmp_path / "runs" / "poses" / "poses.pkl"), test_fraction=0.3)
    source = VideoFolderSource(cfg)
    with pytest.raises(DataError, match=r"run `mmfc stage poses`"):
        source.load_skeleton(source.samples()[0])
    info = describe_selection(cfg)
    assert info["source"] == "videos" and info["samples"] == 9
    assert sum(info["splits"].values()) == 9 and set(info["classes"]) == {"Archery", "Biking", "Diving"}
    assert info["video"] == {"with": 9, "without": 0}
