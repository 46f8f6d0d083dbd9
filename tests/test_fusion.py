import json

import numpy as np
import pytest
import torch

from mmfc.config import Pipeline
from mmfc.errors import DataError
from mmfc.fusion.methods import (
    GlobalFusion,
    Temperatures,
    choose_alpha,
    fit_adaptive,
    fit_per_class,
    fit_temperature,
    fuse_adaptive,
    log_softmax,
)
from mmfc.fusion.stage import run_fuse
from mmfc.scores.format import ScoreTable, check_compatible, read_scores, write_scores

torch.set_num_threads(1)


def _sample_labels(rng, scores):
    """One label per row drawn from softmax(scores) (Gumbel-max)."""
    return np.argmax(scores + rng.gumbel(size=scores.shape), axis=1)


def _gaussian_streams(rng, n, k, snr_rgb=2.0, snr_skel=1.0):
    """Logits = snr * onehot(label) + N(0, 1): softmax(snr * z) is then the exact posterior."""
    labels = rng.integers(0, k, n)
    onehot = np.eye(k)[labels]
    rgb = snr_rgb * onehot + rng.normal(size=(n, k))
    skel = snr_skel * onehot + rng.normal(size=(n, k))
    return rgb, skel, labels


def test_temperature_scaling_recovers_known_temperature():
    rng = np.random.default_rng(1)
    logits = 4 * rng.normal(size=(20000, 10))
    labels = _sample_labels(rng, logits / 2.5)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.04)


def test_choose_alpha_recovers_the_weight_that_separates_the_samples():
    # Two classes. A "low" sample is classified right iff alpha > t (t just below 0.3), a "high"
    # one iff alpha < t (t just above 0.3): only alpha = 0.3 gets every sample right.
    rng = np.random.default_rng(2)
    low_t = rng.uniform(0.2, 0.295, 300)
    high_t = rng.uniform(0.305, 0.4, 300)
    margin_rgb = np.concatenate([1 - low_t, -(1 - high_t)])
    margin_skel = np.concatenate([-low_t, high_t])
    labels = rng.integers(0, 2, 600)
    rows = np.arange(600)

    def scores(margin):
        s = np.zeros((600, 2))
        s[rows, labels] = margin
        return log_softmax(s)

    logp_rgb, logp_skel = scores(margin_rgb), scores(margin_skel)
    assert choose_alpha(logp_rgb, logp_skel, labels, grid=101, metric="top1") == pytest.approx(0.3)
    assert choose_alpha(logp_rgb, logp_skel, labels, grid=101, metric="mean_class") == pytest.approx(0.3)


def test_global_fusion_recovers_the_bayes_weight_of_gaussian_streams():
    # Calibrated, conditionally independent streams combine 1:1 (alpha = 0.5) after the fitted
    # temperatures 1/snr; in raw logits that is the Bayes ratio snr_rgb : snr_skel = 2 : 1.
    rng = np.random.default_rng(3)
    rgb, skel, labels = _gaussian_streams(rng, 20000, 10)
    temperatures = Temperatures.fit(rgb, skel, labels)
    assert temperatures.rgb == pytest.approx(0.5, rel=0.05)
    assert temperatures.skel == pytest.approx(1.0, rel=0.05)
    fitted = GlobalFusion.fit(rgb, skel, labels, temperatures, grid=101, metric="top1")
    assert fitted.alpha == pytest.approx(0.5, abs=0.06)


def test_adaptive_with_zero_parameters_is_plain_averaging():
    rng = np.random.default_rng(4)
    logp_rgb, logp_skel = log_softmax(rng.normal(size=(50, 7))), log_softmax(rng.normal(size=(50, 7)))
    np.testing.assert_allclose(fuse_adaptive(logp_rgb, logp_skel, 0.0, 0.0), (logp_rgb + logp_skel) / 2)


def test_adaptive_fit_recovers_known_gain_and_offset():
    rng = np.random.default_rng(5)
    n, k = 20000, 10
    # Rows of varied sharpness so the confidence gap spreads out.
    logp_rgb = log_softmax(rng.normal(size=(n, k)) * rng.uniform(0.2, 3, (n, 1)))
    logp_skel = log_softmax(rng.normal(size=(n, k)) * rng.uniform(0.2, 3, (n, 1)))
    labels = _sample_labels(rng, fuse_adaptive(logp_rgb, logp_skel, 3.0, 0.4))
    g, d, scale = fit_adaptive(logp_rgb, logp_skel, labels)
    assert g == pytest.approx(3.0, abs=0.4)
    assert d == pytest.approx(0.4, abs=0.1)
    assert scale == pytest.approx(1.0, abs=0.05)


def test_per_class_shrinks_to_global_weight_under_a_huge_penalty():
    rng = np.random.default_rng(6)
    logp_rgb, logp_skel = log_softmax(rng.normal(size=(500, 6)) * 2), log_softmax(rng.normal(size=(500, 6)) * 2)
    labels = rng.integers(0, 6, 500)
    a, b, beta = fit_per_class(logp_rgb, logp_skel, labels, alpha=0.7, l2=1e9)
    np.testing.assert_allclose(a, 0.7, atol=1e-4)
    np.testing.assert_allclose(b, 0.3, atol=1e-4)
    np.testing.assert_allclose(beta, 0.0, atol=1e-4)
    # With a weak penalty the class weights move to fit the (uninformative-for-rgb) data.
    a_free, _, _ = fit_per_class(logp_rgb, logp_skel, labels, alpha=0.7, l2=1e-3)
    assert np.abs(a_free - 0.7).max() > 0.05


# ---------------------------------------------------------------------------------------------
# The stage, on score files written to tmp_path


def _tables(rng, n_per_split=(300, 400, 400), k=8):
    splits = [s for s, n in zip(("train", "val", "test"), n_per_split) for _ in range(n)]
    n = len(splits)
    rgb_logits, skel_logits, labels = _gaussian_streams(rng, n, k, 2.0, 1.2)
    names = [f"class {c}" for c in range(k)]
    ids = [f"S{i:04d}" for i in range(n)]

    def table(logits, modality):
        return ScoreTable(
            list(ids), list(splits), labels.copy(), logits.astype(np.float32), modality, f"ck-{modality}", "pd", list(names)
        )

    return table(rgb_logits, "rgb"), table(skel_logits, "skel")


def _pipeline(tmp_path) -> Pipeline:
    cfg = Pipeline(workdir=str(tmp_path / "run"))
    cfg.fusion.grid = 21
    return cfg


def _write(cfg, rgb, skel):
    write_scores(cfg.paths.scores / "rgb.parquet", rgb)
    write_scores(cfg.paths.scores / "skel.parquet", skel)


def test_run_fuse_writes_weights_and_fused_scores(tmp_path):
    cfg = _pipeline(tmp_path)
    rgb, skel = _tables(np.random.default_rng(7))
    # Stored in a different row order: the stage aligns by id.
    _write(cfg, rgb, skel.take(np.arange(len(skel.ids))[::-1]))
    run_fuse(cfg)
    weights = json.loads((cfg.paths.fusion / "weights.json").read_text())
    assert weights["fit_split"] == "val" and weights["num_fit_samples"] == 400
    assert set(weights["methods"]) == {"global", "adaptive", "per_class", "pyskl_1_1", "pyskl_2_1", "pyskl_1_2"}
    assert 0.0 <= weights["methods"]["global"]["params"]["alpha"] <= 1.0
    assert len(weights["methods"]["per_class"]["params"]["a"]) == 8
    fused = read_scores(cfg.paths.fusion / "fused.parquet")
    assert fused.modality == "fusion:global" and fused.ids == rgb.ids
    # Fusing two informative streams beats the better one alone on validation.
    val_top1 = weights["methods"]["global"]["val"]["top1"]
    assert val_top1 > weights["single_modality_val"]["rgb"]["top1"]


def test_weights_depend_on_validation_rows_only(tmp_path):
    cfg = _pipeline(tmp_path)
    rgb, skel = _tables(np.random.default_rng(8))
    _write(cfg, rgb, skel)
    run_fuse(cfg)
    first = json.loads((cfg.paths.fusion / "weights.json").read_text())
    test = np.array([s == "test" for s in rgb.splits])
    rgb.logits[test] = np.random.default_rng(9).normal(size=(test.sum(), 8)) * 5
    skel.logits[test] = -skel.logits[test]
    _write(cfg, rgb, skel)
    run_fuse(cfg)
    second = json.loads((cfg.paths.fusion / "weights.json").read_text())
    assert second["methods"] == first["methods"]
    # ...while the fused test scores did change.
    assert read_scores(cfg.paths.fusion / "global.parquet").rows("test").logits.std() > 0


@pytest.mark.parametrize(
    "change, message",
    [
        ("ids", "sample sets differ"),
        ("labels", "labels differ"),
        ("classes", "class counts differ"),
    ],
)
def test_mismatched_score_files_are_refused(tmp_path, change, message):
    cfg = _pipeline(tmp_path)
    rgb, skel = _tables(np.random.default_rng(10), (10, 10, 10), k=5)
    if change == "ids":
        skel.ids[3] = "other"
    elif change == "labels":
        skel.labels[4] = (skel.labels[4] + 1) % 5
    else:
        skel.logits = np.concatenate([skel.logits, skel.logits[:, :1]], axis=1)
        skel.class_names = skel.class_names + ["extra"]
    _write(cfg, rgb, skel)
    with pytest.raises(DataError, match=message):
        run_fuse(cfg)
    with pytest.raises(DataError, match="rgb.parquet vs .*skel.parquet"):
        check_compatible(rgb, skel, cfg.paths.scores / "rgb.parquet", cfg.paths.scores / "skel.parquet")


def test_empty_validation_split_is_a_clear_error(tmp_path):
    cfg = _pipeline(tmp_path)
    rgb, skel = _tables(np.random.default_rng(11), (20, 0, 20), k=4)
    _write(cfg, rgb, skel)
    with pytest.raises(DataError, match="no rows in split 'val'"):
        run_fuse(cfg)


def test_missing_score_file_names_the_stage(tmp_path):
    with pytest.raises(DataError, match=r"skel.parquet: missing; written by `mmfc stage scores --modality skel`"):
        cfg = _pipeline(tmp_path)
        rgb, _ = _tables(np.random.default_rng(12), (5, 5, 5), k=3)
        write_scores(cfg.paths.scores / "rgb.parquet", rgb)
        run_fuse(cfg)


def test_score_file_round_trip_and_foreign_file(tmp_path):
    rgb, _ = _tables(np.random.default_rng(13), (3, 3, 3), k=4)
    path = tmp_path / "s.parquet"
    write_scores(path, rgb)
    back = read_scores(path)
    assert back.ids == rgb.ids and back.splits == rgb.splits and back.class_names == rgb.class_names
    np.testing.assert_array_equal(back.logits, rgb.logits)
    np.testing.assert_array_equal(back.labels, rgb.labels)
    assert (back.modality, back.checkpoint_digest, back.pipeline_digest) == ("rgb", "ck-rgb", "pd")
    assert [p.name for p in tmp_path.iterdir()] == ["s.parquet"]  # no temp file left behind
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="broken.parquet: not a readable Parquet"):
        read_scores(tmp_path / "broken.parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1]}), tmp_path / "foreign.parquet")
    with pytest.raises(DataError, match="not an mmfc score file"):
        read_scores(tmp_path / "foreign.parquet")
