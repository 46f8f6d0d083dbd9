"""`mmfc predict` over every branch of a run: RGB and two skeleton streams (each branch's own
stage-3 logits and stage 4's fused scores), and runs of skeleton branches alone, predicted from
skeleton files without video (a real NW-UCLA JSON sequence, a real NTU .skeleton, a pose pickle's
annotations), or from a video's estimated poses where it was trained on stage 0's, and the
refusals that say what to give instead. Their exports: tests/test_export.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import PIPELINES, TINY_MODELS, train_to_fusion
from typer.testing import CliRunner

from mmfc.cli import app
from mmfc.config import load_pipeline
from mmfc.poses.stage import run_poses
from mmfc.predict.predictor import predict_skeleton
from mmfc.run_folder import open_run
from mmfc.scores.format import read_scores

pytestmark = pytest.mark.slow  # trains runs and predicts with them: `make test-fast` leaves it out

torch.set_num_threads(1)


def mmfc(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def mmfc_json(*args) -> list[dict]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line(output: str) -> str:
    """A command's error, which is one line (the terminal may wrap it)."""
    lines = [line for line in output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return " ".join(output[output.index("error:"):].split())


def stage_logits(run: Path, branch: str, sample_id: str) -> np.ndarray:
    table = read_scores(run / "scores" / f"{branch}.parquet")
    return table.logits[table.ids.index(sample_id)]


def assert_float32_close(ours: np.ndarray, stored: np.ndarray) -> None:
    """Equal to float32's rounding: a batch of one and the stage's batches sum in another order
    (the tiny networks of one epoch give logits in the ten thousands on NW-UCLA's metres)."""
    np.testing.assert_allclose(ours, stored, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# RGB and two skeleton streams


def streams_video(run: Path, sample_id: str) -> Path:
    return run.parent / "data" / "nturgb+d_rgb" / f"{sample_id}_rgb.avi"


def test_three_branches_predict_each_branch_s_stage_3_logits_and_the_fused_scores(tiny_streams_run, tmp_path):
    fused = read_scores(tiny_streams_run / "fusion" / "fused.parquet").rows("test")
    ids = fused.ids[:3]
    videos = [streams_video(tiny_streams_run, i) for i in ids]
    skeletons = tiny_streams_run.parent / "data" / "nturgb+d_skeletons"
    out = tmp_path / "out"
    results = mmfc_json("predict", *videos, "--run", tiny_streams_run, "--skeleton", skeletons, "--json", "--out", out,
                        "--no-draw", "--jobs", "1")
    names = fused.class_names
    for sample_id, row, result in zip(ids, fused.logits, results):
        assert result["branches"] == ["rgb", "joint", "bone"] and not result["notes"] and not result["warning"]
        assert list(result["clips"][0]["top5"]) == ["rgb", "joint", "bone", "fused"]
        top = result["clips"][0]["top5"]["fused"][0]
        probabilities = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        assert top["class"] == names[int(row.argmax())]
        assert top["probability"] == pytest.approx(probabilities.max(), abs=1e-4)
    # The combined table: each branch's logits and the fused ones, as stage 3 and 4 wrote them.
    rows = pq.read_table(out / "predictions.parquet")
    assert rows.column_names[-4:] == ["rgb", "joint", "bone", "fused"]
    for row in rows.to_pylist():
        sample_id = Path(row["input"]).name.removesuffix("_rgb.avi")
        for branch in ("rgb", "joint", "bone"):
            assert_float32_close(row[branch], stage_logits(tiny_streams_run, branch, sample_id))

    # The table: a column per branch, by its label.
    code, output = mmfc("predict", videos[0], "--run", tiny_streams_run, "--skeleton", skeletons)
    assert code == 0 and all(label in output for label in ("RGB", "Joint", "Bone", "fused")), output


def test_three_branches_in_windows_write_each_branch_s_window_scores(tiny_streams_run, tmp_path):
    from mmfc.data.synth.clip import SampleKey
    from mmfc.data.synth.writer import write_sequence

    sequence = write_sequence(tmp_path / "seq", [SampleKey(1, 1, 3, 1, action) for action in (1, 2)],
                              frame_size=(160, 90))
    out = tmp_path / "out"
    code, output = mmfc("predict", sequence["video"], "--run", tiny_streams_run, "--skeleton", sequence["skeleton"],
                        "--window", "1", "--stride", "0.5", "--out", out)
    assert code == 0, output
    folder = out / Path(sequence["video"]).stem
    tables = {name: read_scores(folder / f"windows_{name}.parquet") for name in ("rgb", "joint", "bone", "fused")}
    assert len({len(t.ids) for t in tables.values()}) == 1 and tables["bone"].modality == "bone"
    assert {"annotated.mp4", "strip.png", "timeline.png", "segments.json"} <= {p.name for p in folder.iterdir()}


def test_a_run_with_a_video_branch_refuses_a_skeleton_file_alone(tiny_streams_run, realdata):
    skeleton = realdata / "ntu_skeleton" / "S001C001P001R001A001.skeleton"
    code, output = mmfc("predict", skeleton, "--run", tiny_streams_run)
    assert code == 2 and one_line(output) == (
        f"error: {skeleton}: a skeleton without its video: the run's RGB branch reads video frames; give the clip's "
        "video with this file as its skeleton (`mmfc predict VIDEO --run RUN --skeleton FILE`)")


# ---------------------------------------------------------------------------------------------
# Skeleton branches alone: NW-UCLA's JSON sequences


def ucla_test_file(run: Path) -> tuple[str, Path]:
    sample_id = read_scores(run / "fusion" / "fused.parquet").rows("test").ids[0]
    return sample_id, run.parent / "ucla" / "all_sqe" / f"{sample_id}.json"


def test_a_skeleton_only_run_predicts_a_json_sequence_as_stages_3_and_4_did(ucla_run, tmp_path):
    sample_id, sequence = ucla_test_file(ucla_run)
    prediction, clips, found = predict_skeleton(open_run(ucla_run), sequence)
    assert found.layout.name == "kinect20" and found.pose_source == "kinect-v1" and not prediction.warning
    assert list(prediction.logits) == ["joint", "bone"] and len(clips.store) == 1
    for branch in ("joint", "bone"):
        assert_float32_close(prediction.logits[branch][0], stage_logits(ucla_run, branch, sample_id))
    fused = read_scores(ucla_run / "fusion" / "fused.parquet")
    assert_float32_close(prediction.fused[0], fused.logits[fused.ids.index(sample_id)])
    assert set(prediction.timings) == {"decode", "poses", "crop", "joint", "bone", "fusion"}

    # The command: the file alone, no video; the table and JSON give each stream and the fusion,
    # --out a drawing of the skeleton instead of an annotated video.
    out = tmp_path / "out"
    (result,) = mmfc_json("predict", sequence, "--run", ucla_run, "--json", "--out", out)
    assert (result["input"], result["entry"], result["skeleton"]) == (str(sequence), None, f"file {sequence.name}")
    assert list(result["clips"][0]["top5"]) == ["joint", "bone", "fused"] and result["fps"] == 30.0
    assert sorted(p.name for p in (out / sample_id).iterdir()) == ["prediction.json", "skeleton.png"]
    import cv2

    drawing = cv2.imread(str(out / sample_id / "skeleton.png"))
    assert drawing.shape[1] == 6 * 360 and (drawing != 32).any(axis=2).mean() > 0.05  # six panels, drawn on
    rows = pq.read_table(out / "predictions.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["ok"] and len(rows[0]["joint"]) == 10 and "rgb" not in rows[0]
    code, output = mmfc("predict", sequence, "--run", ucla_run)
    assert code == 0 and "Joint" in output and "Bone" in output and "fused" in output, output


def test_a_folder_of_sequences_in_windows(ucla_run, tmp_path):
    """A folder given to a run without a video branch: its skeleton files, each in windows on
    its 30 fps clock, each window cropped as a clip of its own."""
    folder = tmp_path / "sequences"
    folder.mkdir()
    names = sorted(p.name for p in (ucla_run.parent / "ucla" / "all_sqe").glob("*_v03.json"))[:2]
    for name in names:
        (folder / name).write_bytes((ucla_run.parent / "ucla" / "all_sqe" / name).read_bytes())
    out = tmp_path / "out"
    results = mmfc_json("predict", folder, "--run", ucla_run, "--window", "0.5", "--threshold", "0", "--json",
                        "--out", out, "--jobs", "1")
    assert [Path(r["input"]).name for r in results] == names
    for result in results:
        windows = [(c["start"], c["end"]) for c in result["clips"]]
        assert len(windows) > 1 and windows[0][0] == 0 and sum(s["windows"] for s in result["segments"]) == len(windows)
        stem = Path(result["input"]).stem
        assert {"windows_joint.parquet", "windows_bone.parquet", "windows_fused.parquet", "timeline.png",
                "skeleton.png"} <= {p.name for p in (out / stem).iterdir()}


def test_a_skeleton_only_run_refuses_what_it_cannot_read_and_says_what_to_give(ucla_run, realdata, tmp_path):
    # An NTU skeleton: 25 joints, not the run's 20.
    ntu = realdata / "ntu_skeleton" / "S001C001P001R001A001.skeleton"
    code, output = mmfc("predict", ntu, "--run", ucla_run)
    assert code == 2 and one_line(output) == (
        f"error: {ntu}: the run's skeleton branches read kinect20 joints with 3 coordinates, the skeleton (file "
        f"{ntu.name}) has ntu25 joints with 3, and no mapping between them exists: give a skeleton in the run's layout "
        "(kinect20, 3 coordinates per joint)")
    # A Penn Action label file: 13 joints in 2D.
    penn = realdata / "penn_action" / "labels" / "0001.mat"
    code, output = mmfc("predict", penn, "--run", ucla_run)
    assert code == 2 and "the skeleton (file 0001.mat) has penn13 joints with 2, and no mapping" in one_line(output)
    # A video: the run learnt Kinect v1's joints, which no estimator gives.
    video = realdata / "videos" / "S001C001P001R001A001_rgb.avi"
    code, output = mmfc("predict", video, "--run", ucla_run)
    assert code == 2 and one_line(output).startswith(
        f"error: {video}: the run has no video branch, and its skeleton branches were trained on Kinect v1 joints "
        "(NW-UCLA's sequences), which no estimator gives from a video: give the clip's skeleton file instead")
    # --skeleton names a video's skeleton; --entry an annotation of a pickle among the inputs.
    _, sequence = ucla_test_file(ucla_run)
    code, output = mmfc("predict", sequence, "--run", ucla_run, "--skeleton", sequence)
    assert code == 2 and "it names the skeletons of videos, and the inputs are skeleton files" in one_line(output)
    code, output = mmfc("predict", sequence, "--run", ucla_run, "--entry", "a01")
    assert code == 2 and "--entry names annotations of a pose pickle given as an input, and none is" in one_line(output)
    # A broken sequence: one line naming it and why.
    broken = tmp_path / "a01_s01_e00_v03.json"
    broken.write_text('{"label": 1, "skeletons": [[[0, 0, 1]]]}')
    code, output = mmfc("predict", broken, "--run", ucla_run)
    assert code == 2 and one_line(output).startswith(f"error: {broken}: 'skeletons' has shape [1, 1, 3]")


# ---------------------------------------------------------------------------------------------
# Skeleton branches alone: NTU's .skeleton files without videos, and a pose pickle's annotation


def test_an_ntu_skeleton_only_run_predicts_a_skeleton_file(ntu_skeleton_run, realdata, tmp_path):
    run = open_run(ntu_skeleton_run)
    assert run.branches == ["skel"] and run.fusion_method == "skel_alone"
    test_ids = read_scores(ntu_skeleton_run / "fusion" / "fused.parquet").rows("test").ids
    assert sorted(test_ids) == ["S002C001P003R001A003", "S004C002P003R001A017"]
    path = realdata / "ntu_skeleton" / f"{test_ids[0]}.skeleton"
    prediction, _, found = predict_skeleton(run, path)
    assert found.pose_source == "kinect" and not prediction.warning and not prediction.notes
    assert_float32_close(prediction.logits["skel"][0], stage_logits(ntu_skeleton_run, "skel", test_ids[0]))
    (result,) = mmfc_json("predict", path, "--run", ntu_skeleton_run, "--json")
    assert result["fusion"] == "skel_alone" and list(result["clips"][0]["top5"]) == ["skel", "fused"]

    # A pose pickle's annotations, by name (PYSKL's 3D NTU pickle of the same six recordings):
    # no pose source recorded, so the warning says the run may not know these joints.
    pickle = realdata / "pose_pkl" / "derived_ntu6_3d_pyskl.pkl"
    results = mmfc_json("predict", pickle, "--entry", test_ids[1], "--entry", test_ids[0], "--run", ntu_skeleton_run,
                        "--json")
    assert [(r["input"], r["entry"]) for r in results] == [(str(pickle), test_ids[1]), (str(pickle), test_ids[0])]
    assert results[1]["warning"].startswith("the run's skeleton branches were trained on Kinect v2 joints")
    code, output = mmfc("predict", pickle, "--entry", "S999", "--run", ntu_skeleton_run)
    assert code == 2 and one_line(output).startswith(
        f"error: {pickle}: holds no annotations named 'S999' among its 6 (S001C001P001R001A001, ")
    # Without --entry, every annotation of the pickle.
    out = tmp_path / "out"
    assert len(mmfc_json("predict", pickle, "--run", ntu_skeleton_run, "--json", "--out", out, "--no-draw",
                         "--jobs", "1")) == 6
    assert len(list((out / "results").iterdir())) == 6 and (out / test_ids[0] / "prediction.json").is_file()


def test_an_ntu_skeleton_only_run_refuses_a_video_alone_and_draws_one_given_its_skeleton(ntu_skeleton_run, realdata,
                                                                                          tmp_path):
    video = realdata / "videos" / "S001C001P001R001A001_rgb.avi"
    code, output = mmfc("predict", video, "--run", ntu_skeleton_run)
    assert code == 2 and one_line(output).startswith(
        f"error: {video}: the run has no video branch, and its skeleton branches were trained on Kinect v2 joints "
        "(NTU .skeleton files), which no estimator gives from a video")
    # With its skeleton, the video is the clock and the picture: the annotated video is drawn.
    kinect = realdata / "ntu_skeleton" / "S001C001P001R001A001.skeleton"
    out = tmp_path / "out"
    (result,) = mmfc_json("predict", video, "--run", ntu_skeleton_run, "--skeleton", kinect, "--json", "--out", out)
    assert result["branches"] == ["skel"] and result["frames"] == 103 and not result["warning"]
    assert {"annotated.mp4", "strip.png", "prediction.json"} == {p.name for p in (out / video.stem).iterdir()}
    alone, _, _ = predict_skeleton(open_run(ntu_skeleton_run), kinect)
    np.testing.assert_allclose(result["clips"][0]["top5"]["skel"][0]["probability"],
                               alone.probabilities["skel"][0].max(), atol=1e-5)


def test_a_skeleton_only_run_on_stage_0_s_poses_predicts_a_video_from_its_estimated_poses(video_folders, pose_models,
                                                                                          tmp_path):
    """The skeleton branch alone, trained on BlazePose's poses of plain videos (stage 0): a video
    is predicted from the poses the same estimator finds in it, with no warning."""
    cfg = load_pipeline(PIPELINES / "videos-example.toml", [
        f"workdir={json.dumps(str(tmp_path / 'run'))}", f"data.root={json.dumps(str(video_folders))}",
        f"poses.models_dir={json.dumps(str(pose_models))}", "data.group_pattern=''", "data.test_fraction=0.3",
        "data.val_fraction=0.3", "data.val_seed=0", 'branches=["skel"]', "crops.size=40", "crops.num_frames=8",
        "crops.skeleton_frames=16", "jobs.n_jobs=1", *TINY_MODELS, "skel.train.batch_size=2",
    ])
    run_poses(cfg)
    train_to_fusion(cfg, ["skel"])
    video = video_folders / "hug" / "hug_g01_c01.avi"
    (result,) = mmfc_json("predict", video, "--run", tmp_path / "run", "--json", "--set",
                          f"poses.models_dir={pose_models}")
    assert result["branches"] == ["skel"] and result["skeleton"] == "estimated (BlazePose)"
    assert not result["warning"] and result["fusion"] == "skel_alone"
