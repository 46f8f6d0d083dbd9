import json
import math
import warnings

import numpy as np
import pytest
import torch

from mmfc.config import DataConfig, Pipeline, fusion_candidates
from mmfc.errors import DataError, DataWarning
from mmfc.fusion.files import fitted_from_params
from mmfc.fusion.methods import (
    GlobalFusion,
    Temperatures,
    fit_adaptive,
    fit_per_class,
    fit_scale,
    fit_weights,
    fuse_adaptive,
    mix_probabilities,
)
from mmfc.fusion.selection import (
    CANDIDATES,
    Candidate,
    CVScore,
    best_index,
    choose_auto,
    make_folds,
    near_tie,
    sample_groups,
    select_fusion,
)
from mmfc.fusion.stage import run_fuse
from mmfc.metrics import log_softmax
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


def _select(rgb, skel, labels, grid=51, metric="top1", groups=None):
    folds = make_folds(labels, groups, "performer" if groups else None, 5, 0)
    return select_fusion({"rgb": rgb, "skel": skel}, labels, folds, grid, metric)


def test_output_scale_recovers_known_temperature():
    rng = np.random.default_rng(1)
    logits = 4 * rng.normal(size=(20000, 10))
    labels = _sample_labels(rng, logits / 2.5)
    assert 1 / fit_scale(logits, labels) == pytest.approx(2.5, rel=0.04)
    # Labels that never follow the logits: the search range's lower edge.
    assert fit_scale(logits, logits.argmin(axis=1)) == pytest.approx(0.01, rel=1e-6)


def test_output_scale_of_rows_all_classified_right_is_one():
    # Their NLL falls all the way to s = infinity: the rows do not say how sure to be, and the
    # scores stay as they came, where the search used to end at its edge (100).
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(12, 12))
    labels = logits.argmax(axis=1)
    assert fit_scale(logits, labels) == 1.0
    assert fit_scale(3 * logits, labels) == 1.0
    # One mistake among them bounds the NLL's fall: a finite scale above 1, fitted.
    labels[0] = logits[0].argmin()
    assert 1.0 < fit_scale(logits, labels) < 100.0


def test_global_fusion_recovers_the_bayes_weight_of_gaussian_streams():
    # Calibrated, conditionally independent streams combine 1:1 (alpha = 0.5) after the fitted
    # temperatures 1/snr; in raw logits that is the Bayes ratio snr_rgb : snr_skel = 2 : 1.
    rng = np.random.default_rng(3)
    rgb, skel, labels = _gaussian_streams(rng, 20000, 10)
    temperatures = Temperatures.fit({"rgb": rgb, "skel": skel}, labels)
    assert temperatures.values["rgb"] == pytest.approx(0.5, rel=0.05)
    assert temperatures.values["skel"] == pytest.approx(1.0, rel=0.05)
    fitted = GlobalFusion.fit(temperatures.calibrate({"rgb": rgb, "skel": skel}), labels, {"rgb": 0.5, "skel": 0.5})
    # The sum of two calibrated log-probabilities: weight 1/2 each at scale 2.
    assert fitted.scale == pytest.approx(2.0, rel=0.05)


def test_cross_validation_picks_a_known_weight():
    # Labels drawn from softmax(0.3 log_softmax(rgb) + 0.7 log_softmax(skel)). Temperature
    # scaling only adds a constant per row to a log-softmax, so after the fitted temperatures
    # T the true weight is 0.3 T_rgb / (0.3 T_rgb + 0.7 T_skel).
    rng = np.random.default_rng(2)
    rgb, skel = 3 * rng.normal(size=(1200, 6)), 2 * rng.normal(size=(1200, 6))
    labels = _sample_labels(rng, 0.3 * log_softmax(rgb) + 0.7 * log_softmax(skel))
    selection = _select(rgb, skel, labels, grid=51)
    t = selection.candidates["global"].fitted.temperatures.values
    assert selection.candidates["global"].chosen == pytest.approx(0.3 * t["rgb"] / (0.3 * t["rgb"] + 0.7 * t["skel"]), abs=0.04)
    # Every value of the grid was cross-validated, and the chosen one has the lowest NLL or
    # is within noise of it.
    choices = selection.candidates["global"].choices
    assert len(choices) == 51
    assert near_tie(selection.candidates["global"].cv, min((c.cv for c in choices), key=lambda cv: cv.nll))


def test_per_class_is_the_global_weight_with_two_samples_per_class():
    rng = np.random.default_rng(14)
    k = 10
    labels = np.repeat(np.arange(k), 2)
    onehot = np.eye(k)[labels]
    rgb, skel = 2 * onehot + rng.normal(size=(2 * k, k)), onehot + rng.normal(size=(2 * k, k))
    selection = _select(rgb, skel, labels)
    per_class, global_ = selection.candidates["per_class"], selection.candidates["global"]
    assert per_class.chosen == math.inf and "per_class is the global weight" in per_class.note
    new_rgb, new_skel = rng.normal(size=(50, k)), rng.normal(size=(50, k))
    new = {"rgb": new_rgb, "skel": new_skel}
    np.testing.assert_allclose(per_class.fitted.apply(new), global_.fitted.apply(new))
    assert per_class.cv.nll == pytest.approx(global_.cv.nll)


def test_per_class_shrinkage_is_chosen_weaker_where_classes_differ():
    # RGB tells classes 0-3 apart and is noise on 4-7, the skeleton the other way round: only
    # per-class weights can use both, and with 100 samples per class cross-validation lets them.
    rng = np.random.default_rng(15)
    n, k = 800, 8
    labels = rng.integers(0, k, n)
    onehot = np.eye(k)[labels]
    rgb_snr = np.where(labels < 4, 3.0, 0.0)[:, None]
    skel_snr = np.where(labels < 4, 0.0, 3.0)[:, None]
    rgb, skel = rgb_snr * onehot + rng.normal(size=(n, k)), skel_snr * onehot + rng.normal(size=(n, k))
    selection = _select(rgb, skel, labels)
    per_class = selection.candidates["per_class"]
    assert per_class.chosen < math.inf
    assert not near_tie(selection.candidates["global"].cv, per_class.cv)
    assert selection.auto_pick == "per_class"


def test_auto_falls_back_to_the_fixed_ratio_that_made_the_labels():
    # Each label comes from the RGB distribution with probability 1/3 and from the skeleton's
    # with 2/3: exactly PYSKL's 1:2 mixture of probabilities, which no log-linear weight mimics.
    rng = np.random.default_rng(16)
    n, k = 600, 8
    rgb, skel = 4 * rng.normal(size=(n, k)), 4 * rng.normal(size=(n, k))
    labels = _sample_labels(rng, mix_probabilities({"rgb": rgb, "skel": skel}, {"rgb": 1, "skel": 2}))
    selection = _select(rgb, skel, labels)
    assert selection.auto_pick == "pyskl_1_2"
    assert "best of the single modalities and fixed ratios" in selection.auto_reason


def test_auto_is_never_worse_in_cv_nll_than_any_baseline():
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        n, k = int(rng.integers(12, 100)), int(rng.integers(3, 8))
        rgb, skel, labels = _gaussian_streams(rng, n, k, rng.uniform(0, 3), rng.uniform(0, 3))
        selection = _select(rgb, skel, labels, grid=21)
        assert list(selection.candidates) == list(CANDIDATES)
        picked = selection.candidates[selection.auto_pick].cv.nll
        assert picked <= min(selection.candidates[b].cv.nll for b in selection.baselines)


def test_auto_keeps_the_single_modality_when_the_other_is_noise():
    rng = np.random.default_rng(17)
    rgb, _, labels = _gaussian_streams(rng, 300, 6, 2.5, 0.0)
    skel = rng.normal(size=rgb.shape)
    selection = _select(rgb, skel, labels)
    picked = selection.candidates[selection.auto_pick]
    assert picked.cv.nll <= selection.candidates["rgb_alone"].cv.nll
    # Calibrated, the noise is almost uniform: whatever its weight, the predictions are RGB's.
    assert np.mean(picked.fitted.apply({"rgb": rgb, "skel": skel}).argmax(axis=1) == rgb.argmax(axis=1)) > 0.95


def _cv_score(losses, correct, labels=None):
    losses, correct = np.asarray(losses, float), np.asarray(correct, bool)
    labels = np.zeros(losses.size, int) if labels is None else np.asarray(labels)
    counts = np.bincount(labels)
    return CVScore(
        nll=float(losses.mean()), top1=float(correct.mean()), mean_class=float(np.mean([correct[labels == c].mean() for c in np.unique(labels)])),
        correct=correct, losses=losses, class_weights=labels.size / (np.count_nonzero(counts) * counts[labels]),
    )


def test_an_accuracy_within_noise_is_a_tie_that_goes_to_the_simpler_option():
    rng = np.random.default_rng(30)
    losses = rng.exponential(size=40)
    correct = rng.random(40) < 0.7
    simple = _cv_score(losses + 0.001, correct)
    one_more_right = correct.copy()
    one_more_right[np.flatnonzero(~correct)[0]] = True
    flexible = _cv_score(losses, one_more_right)  # lowest NLL, one sample more right: noise both
    assert best_index([simple, flexible], "top1") == 0
    # Six samples more right (15% of 40) is evidence: the higher accuracy decides.
    many_more = correct.copy()
    many_more[np.flatnonzero(~correct)[:6]] = True
    assert best_index([simple, _cv_score(losses, many_more)], "top1") == 1
    # Mean class accuracy weighs each class equally: two more right in a class of 2, two fewer in
    # a class of 38, is no change of top-1 but one of mean class accuracy.
    labels = np.r_[np.zeros(38, int), np.ones(2, int)]
    small_class = correct.copy()
    small_class[38:] = [False, False]
    fixed_in_small = small_class.copy()
    fixed_in_small[38:] = [True, True]
    fixed_in_small[np.flatnonzero(small_class[:38])[:2]] = False
    assert best_index([_cv_score(losses + 0.001, small_class, labels), _cv_score(losses, fixed_in_small, labels)], "mean_class") == 1
    assert best_index([_cv_score(losses + 0.001, small_class, labels), _cv_score(losses, fixed_in_small, labels)], "top1") == 0


def test_a_free_choice_keeps_the_guarantee_where_one_of_its_values_does():
    # Three options within noise of each other (1 nat in total apart at most); the simplest is
    # above the ceiling.
    rng = np.random.default_rng(31)
    losses, correct = rng.exponential(size=40), rng.random(40) < 0.7
    options = [_cv_score(losses + d, correct) for d in (0.02, 0.01, 0.0)]
    assert best_index(options, "top1", complexity=[0, 1, 2]) == 0  # all tied: the simplest
    assert best_index(options, "top1", complexity=[0, 1, 2], ceiling=float(options[1].nll)) == 1
    assert best_index(options, "top1", complexity=[0, 1, 2], ceiling=0.0) == 0  # none below: as without


def test_auto_keeps_both_modalities_when_the_data_cannot_tell_fusion_from_one():
    rng = np.random.default_rng(32)
    losses, correct = rng.exponential(size=30), rng.random(30) < 0.8
    cv = {name: _cv_score(losses + 0.5, correct) for name in CANDIDATES}
    cv["skel_alone"] = _cv_score(losses, correct)  # the best baseline
    cv["global"] = _cv_score(losses - 0.002, correct)  # a hair lower: a near-tie
    candidates = {name: Candidate(fitted=None, cv=score) for name, score in cv.items()}
    pick, reason = choose_auto(candidates, "top1", ("rgb", "skel"))
    assert pick == "global"
    assert "within noise too, so the simpler candidate was taken" not in reason  # global is the lowest NLL
    cv["global"] = _cv_score(losses + 0.002, correct)  # now above skel_alone: not eligible
    pick, reason = choose_auto({n: Candidate(fitted=None, cv=s) for n, s in cv.items()}, "top1", ("rgb", "skel"))
    assert pick == "skel_alone" and "hence not eligible" in reason


def test_cross_validated_choices_are_never_above_the_best_baseline_when_they_need_not_be():
    for seed in range(3):
        rng = np.random.default_rng(200 + seed)
        rgb, skel, labels = _gaussian_streams(rng, 40, 5, rng.uniform(0, 2), rng.uniform(0, 2))
        selection = _select(rgb, skel, labels, grid=21)
        bar = min(selection.candidates[b].cv.nll for b in selection.baselines)
        for name in ("global", "adaptive"):
            candidate = selection.candidates[name]
            if min(c.cv.nll for c in candidate.choices) <= bar:
                assert candidate.cv.nll <= bar


def test_folds_keep_performers_apart_and_stratify_otherwise():
    labels = np.tile(np.arange(4), 30)  # 120 samples
    groups = [f"P{i % 7:03d}" for i in range(120)]
    folds = make_folds(labels, groups, "performer", 5, 0)
    assert folds.count == 5 and folds.grouped_by == "performer" and folds.num_groups == 7
    for train, held in folds.splits():
        assert not {groups[i] for i in train} & {groups[i] for i in held}
    two = make_folds(labels, [f"P{i % 2}" for i in range(120)], "performer", 5, 0)
    assert two.count == 2  # as many folds as performers
    stratified = make_folds(labels, None, None, 5, 0)
    assert stratified.grouped_by is None and stratified.count == 5
    counts = np.array([np.bincount(labels[stratified.index == f], minlength=4) for f in range(5)])
    assert counts.max() - counts.min() <= 1  # every class spread evenly over the folds
    np.testing.assert_array_equal(stratified.index, make_folds(labels, None, None, 5, 0).index)  # seeded


def test_fold_groups_come_from_the_score_file():
    table = ScoreTable(["a", "b", "c"], ["val"] * 3, np.zeros(3, np.int64), np.zeros((3, 2), np.float32), "rgb",
                       "ck", "pd", ["x", "y"], groups=["P008", "P016", "P008"], group_kind="performer")
    assert sample_groups(table, "rgb.parquet") == (["P008", "P016", "P008"], "performer")
    # Every clip its own group (a dataset that names none): nothing to keep apart, so stratified folds.
    table.groups = ["a", "b", "c"]
    assert sample_groups(table, "rgb.parquet") == (None, None)
    table.groups = None
    with pytest.raises(DataError, match="rgb.parquet: names no sample groups .*rerun `mmfc stage scores`"):
        sample_groups(table, "rgb.parquet")


def test_adaptive_with_zero_parameters_is_plain_averaging():
    rng = np.random.default_rng(4)
    logp_rgb, logp_skel = log_softmax(rng.normal(size=(50, 7))), log_softmax(rng.normal(size=(50, 7)))
    logp = {"rgb": logp_rgb, "skel": logp_skel}
    np.testing.assert_allclose(fuse_adaptive(logp, 0.0, {"rgb": 0.0, "skel": 0.0}), (logp_rgb + logp_skel) / 2)


def test_adaptive_fit_recovers_known_gain_and_offset():
    rng = np.random.default_rng(5)
    n, k = 20000, 10
    # Rows of varied sharpness so the confidence gap spreads out.
    logp_rgb = log_softmax(rng.normal(size=(n, k)) * rng.uniform(0.2, 3, (n, 1)))
    logp_skel = log_softmax(rng.normal(size=(n, k)) * rng.uniform(0.2, 3, (n, 1)))
    logp = {"rgb": logp_rgb, "skel": logp_skel}
    labels = _sample_labels(rng, fuse_adaptive(logp, 3.0, {"rgb": 0.4, "skel": 0.0}))
    g, bias, scale = fit_adaptive(logp, labels, GlobalFusion({"rgb": 0.5, "skel": 0.5}, 1.0), l2=0.0)
    assert g == pytest.approx(3.0, abs=0.4)
    assert bias["rgb"] - bias["skel"] == pytest.approx(0.4, abs=0.1)
    assert scale == pytest.approx(1.0, abs=0.05)
    # Infinite shrinkage is the constant global weight.
    g, bias, scale = fit_adaptive(logp, labels, GlobalFusion({"rgb": 0.25, "skel": 0.75}, 1.7), l2=math.inf)
    assert g == 0 and bias["rgb"] - bias["skel"] == pytest.approx(math.log(0.25 / 0.75)) and scale == 1.7


def test_per_class_shrinks_to_global_weight_under_a_huge_penalty():
    rng = np.random.default_rng(6)
    logp_rgb, logp_skel = log_softmax(rng.normal(size=(500, 6)) * 2), log_softmax(rng.normal(size=(500, 6)) * 2)
    labels = rng.integers(0, 6, 500)
    logp = {"rgb": logp_rgb, "skel": logp_skel}
    target = GlobalFusion({"rgb": 0.7, "skel": 0.3}, 2.0)
    class_weights, beta = fit_per_class(logp, labels, target, l2=1e9)
    np.testing.assert_allclose(class_weights["rgb"], 1.4, atol=1e-4)
    np.testing.assert_allclose(class_weights["skel"], 0.6, atol=1e-4)
    np.testing.assert_allclose(beta, 0.0, atol=1e-4)
    # With a weak penalty the class weights move to fit the (uninformative-for-rgb) data.
    free, _ = fit_per_class(logp, labels, target, l2=1e-3)
    assert np.abs(free["rgb"] - 1.4).max() > 0.05


# ---------------------------------------------------------------------------------------------
# More than two branches


STREAMS = ("joint", "bone", "joint_motion", "bone_motion")


def _branches(rng, n, k, snrs: dict[str, float]):
    """Independent Gaussian streams of the given signal-to-noise ratios, by branch name."""
    labels = rng.integers(0, k, n)
    onehot = np.eye(k)[labels]
    return {b: snr * onehot + rng.normal(size=(n, k)) for b, snr in snrs.items()}, labels


def _select_branches(logits, labels, groups=None):
    folds = make_folds(labels, groups, "performer" if groups else None, 5, 0)
    return select_fusion(logits, labels, folds, 21, "top1")


def test_a_branch_of_pure_noise_carries_no_weight_in_effect():
    rng = np.random.default_rng(40)
    logits, labels = _branches(rng, 1500, 10, {"rgb": 2.0, "joint": 1.5})
    logits["bone"] = 5 * rng.normal(size=logits["rgb"].shape)  # confident, and unrelated to the labels
    selection = _select_branches(logits, labels)
    for name in ("global", "adaptive", "per_class", selection.auto_pick):
        shares = selection.candidates[name].shares
        # Calibrated, the noise is flat: its share of the fused evidence is nil whatever its weight.
        assert abs(shares["bone"]) < 0.01, name
        assert shares["rgb"] > shares["joint"] > 0.2, name
    fused = selection.candidates[selection.auto_pick].fitted.apply(logits)
    without = _select_branches({b: logits[b] for b in ("rgb", "joint")}, labels)
    alone = without.candidates[without.auto_pick].fitted.apply(logits)
    assert np.mean(fused.argmax(axis=1) == alone.argmax(axis=1)) > 0.97
    # The fusion beats the better branch alone, cross-validated.
    assert selection.candidates[selection.auto_pick].cv.nll < selection.candidates["rgb_alone"].cv.nll - 0.1


def test_two_identical_branches_split_the_weight():
    rng = np.random.default_rng(41)
    logits, labels = _branches(rng, 600, 8, {"rgb": 1.0, "joint": 2.0})
    # Two branches: the global weight is 1/2 (the grid's values tie, and 1/2 is the simplest).
    pair = _select_branches({"joint": logits["joint"], "bone": logits["joint"].copy()}, labels)
    assert pair.candidates["global"].fitted.rule.weights == {"joint": 0.5, "bone": 0.5}
    # Three: the copy and its original share one weight evenly at every shrinkage.
    logits["bone"] = logits["joint"].copy()
    selection = _select_branches(logits, labels)
    for l2 in (math.inf, 10.0, 1.0):
        weights = fit_weights(selection.candidates["global"].fitted.temperatures.calibrate(logits).logp, labels, l2)
        assert weights["joint"] == pytest.approx(weights["bone"], abs=1e-6), l2
    rule = selection.candidates["global"].fitted.rule
    assert rule.weights["joint"] == pytest.approx(rule.weights["bone"], abs=1e-6)
    shares = selection.candidates["global"].shares
    assert shares["joint"] == pytest.approx(shares["bone"], abs=1e-6)


def test_the_convex_fit_recovers_known_weights_of_three_branches():
    # Labels drawn from softmax(sum_b w_b log_softmax(z_b)); after the fitted temperatures T_b the
    # true weights are proportional to w_b T_b (see test_cross_validation_picks_a_known_weight).
    rng = np.random.default_rng(42)
    n, k = 6000, 6
    logits = {"rgb": 3 * rng.normal(size=(n, k)), "joint": 2 * rng.normal(size=(n, k)), "bone": 2.5 * rng.normal(size=(n, k))}
    truth = {"rgb": 0.2, "joint": 0.5, "bone": 0.3}
    labels = _sample_labels(rng, sum(w * log_softmax(logits[b]) for b, w in truth.items()))
    temperatures = Temperatures.fit(logits, labels)
    weights = fit_weights(temperatures.calibrate(logits).logp, labels, 0.0)
    expected = {b: w * temperatures.values[b] for b, w in truth.items()}
    for b in truth:
        assert weights[b] == pytest.approx(expected[b] / sum(expected.values()), abs=0.03), b
    assert fit_weights(temperatures.calibrate(logits).logp, labels, math.inf) == pytest.approx(dict.fromkeys(truth, 1 / 3))


def test_auto_is_never_worse_in_cv_nll_than_any_baseline_with_three_to_five_branches():
    for seed in range(4):
        rng = np.random.default_rng(300 + seed)
        count, n, k = 3 + seed % 3, int(rng.integers(30, 120)), int(rng.integers(3, 8))
        names = ("rgb", *STREAMS)[:count] if seed != 3 else ("rgb", *STREAMS)
        logits, labels = _branches(rng, n, k, {b: rng.uniform(0, 2.5) for b in names})
        groups = [f"P{i % 4:03d}" for i in range(n)]
        selection = _select_branches(logits, labels, groups)
        assert list(selection.candidates) == list(fusion_candidates(tuple(names)))
        picked = selection.candidates[selection.auto_pick].cv.nll
        assert picked <= min(selection.candidates[b].cv.nll for b in selection.baselines), seed
        # The free choices keep the guarantee where one of their values can.
        bar = min(selection.candidates[b].cv.nll for b in selection.baselines)
        for name in ("global", "adaptive", "per_class"):
            candidate = selection.candidates[name]
            if min(c.cv.nll for c in candidate.choices) <= bar:
                assert candidate.cv.nll <= bar, (seed, name)


def test_one_branch_is_the_fusion():
    rng = np.random.default_rng(43)
    logits, labels = _branches(rng, 60, 5, {"joint": 1.5})
    selection = _select_branches(logits, labels)
    assert list(selection.candidates) == ["joint_alone"] and selection.auto_pick == "joint_alone"
    assert selection.baselines == ("joint_alone",) and "One branch, `joint`: the fusion is that branch" in selection.auto_reason
    fitted = selection.candidates["joint_alone"].fitted
    temperature = fitted.temperatures.values["joint"]
    np.testing.assert_allclose(fitted.apply(logits), log_softmax(logits["joint"] / temperature))
    assert selection.candidates["joint_alone"].shares == {"joint": 1.0}


def test_ctrgcns_recipe_is_a_baseline_exactly_when_its_four_streams_are_there():
    assert "ctrgcn" in fusion_candidates(STREAMS) and "ctrgcn" in fusion_candidates(("rgb", *STREAMS))
    for missing in STREAMS:
        assert "ctrgcn" not in fusion_candidates(tuple(s for s in ("rgb", *STREAMS) if s != missing))
    assert fusion_candidates(("rgb", "skel")) == CANDIDATES
    assert fusion_candidates(("joint", "bone"))[:5] == ("joint_alone", "bone_alone", "pyskl_1_1", "pyskl_2_1", "pyskl_1_2")
    assert "pyskl_1_1_1_1_1" in fusion_candidates(("rgb", *STREAMS)) and "pyskl_2_1" not in fusion_candidates(STREAMS)
    rng = np.random.default_rng(44)
    logits, labels = _branches(rng, 200, 6, {"rgb": 1.0, **dict.fromkeys(STREAMS, 1.0)})
    selection = _select_branches(logits, labels)
    assert "ctrgcn" in selection.baselines and "ctrgcn" in selection.tie_order
    ctrgcn = selection.candidates["ctrgcn"].fitted
    # ensemble.py: 0.6 joint + 0.6 bone + 0.4 joint motion + 0.4 bone motion, raw scores; RGB not in it.
    summed = 0.6 * logits["joint"] + 0.6 * logits["bone"] + 0.4 * logits["joint_motion"] + 0.4 * logits["bone_motion"]
    np.testing.assert_allclose(ctrgcn.apply(logits), ctrgcn.rule.scale * summed)
    assert ctrgcn.branches == STREAMS


def test_every_candidate_of_five_branches_round_trips_through_its_params():
    rng = np.random.default_rng(45)
    logits, labels = _branches(rng, 300, 5, {"rgb": 1.0, "joint": 1.5, "bone": 1.2, "joint_motion": 0.8, "bone_motion": 0.7})
    selection = _select_branches(logits, labels)
    new = {b: rng.normal(size=(20, 5)) for b in logits}
    for name, candidate in selection.candidates.items():
        back = fitted_from_params(json.loads(json.dumps(candidate.fitted.params())))
        np.testing.assert_array_equal(back.apply(new), candidate.fitted.apply(new), err_msg=name)
    with pytest.raises(ValueError, match="needs the logits of bone_motion"):
        selection.candidates["global"].fitted.apply({b: z for b, z in new.items() if b != "bone_motion"})


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
            list(ids), list(splits), labels.copy(), logits.astype(np.float32), modality, f"ck-{modality}", "pd",
            list(names), groups=list(ids), group_kind="group",
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
    assert list(weights["methods"]) == list(CANDIDATES)
    assert 0.0 <= weights["methods"]["global"]["params"]["weights"]["rgb"] <= 1.0
    assert len(weights["methods"]["per_class"]["params"]["class_weights"]["rgb"]) == 8
    fused = read_scores(cfg.paths.fusion / "fused.parquet")
    assert weights["requested"] == "auto" and weights["selected"] == weights["auto"]["pick"]
    assert fused.modality == f"fusion:{weights['selected']}" and fused.ids == rgb.ids
    assert f"`{weights['selected']}` has NLL" in weights["auto"]["reason"]
    # Every candidate carries its cross-validated figures with intervals, and the global
    # weight its whole curve over the grid.
    for entry in weights["methods"].values():
        low, high = entry["cv"]["top1_interval"]
        assert low <= entry["cv"]["top1"] <= high and entry["cv"]["nll"] > 0
    choice = weights["methods"]["global"]["choice"]
    assert choice["name"] == "alpha" and len(choice["cv_nll"]) == 21 and choice["chosen"] in choice["values"]
    assert weights["methods"]["per_class"]["choice"]["values"][0] == "inf"
    assert weights["cv"]["folds"] == 5 and weights["cv"]["grouped_by"] is None  # every sample its own group
    # Fusing two informative streams beats the better one alone, cross-validated.
    picked = weights["methods"][weights["selected"]]["cv"]["top1"]
    assert picked > weights["methods"]["rgb_alone"]["cv"]["top1"] + 0.05


def test_a_named_method_is_used_and_performers_make_the_folds(tmp_path):
    cfg = _pipeline(tmp_path)
    cfg.fusion.method = "pyskl_1_2"
    rgb, skel = _tables(np.random.default_rng(18), (20, 60, 20), k=4)
    # Validation comes from three performers.
    performers = [f"P{1 + i % 3:03d}" for i in range(len(rgb.ids))]
    for table in (rgb, skel):
        table.groups, table.group_kind = list(performers), "performer"
    _write(cfg, rgb, skel)
    run_fuse(cfg)
    weights = json.loads((cfg.paths.fusion / "weights.json").read_text())
    assert weights["selected"] == "pyskl_1_2" and weights["auto"]["pick"] in CANDIDATES
    assert read_scores(cfg.paths.fusion / "fused.parquet").modality == "fusion:pyskl_1_2"
    assert weights["cv"]["grouped_by"] == "performer" and weights["cv"]["folds"] == 3


def _pipeline_with_performers(tmp_path, performers: int):
    """Both branches' score files written with their samples spread over `performers` performers."""
    cfg = _pipeline(tmp_path)
    rgb, skel = _tables(np.random.default_rng(18), (20, 60, 20), k=4)
    groups = [f"P{1 + i % performers:03d}" for i in range(len(rgb.ids))]
    for table in (rgb, skel):
        table.groups, table.group_kind = list(groups), "performer"
    _write(cfg, rgb, skel)
    return cfg


@pytest.mark.parametrize("performers, folds, message", [
    (1, 5, r"validation holds 1 group \(P001: 60 samples\), fewer than 3: .*class-stratified instead, every fold of the "
           "same performer"),
    (2, 2, r"validation holds 2 groups \(P001: 30 samples, P002: 30 samples\), fewer than 3: .*each of its 2 "
           "cross-validation folds holds out one performer"),
])
def test_fewer_than_three_validation_groups_are_named_in_a_warning(tmp_path, performers, folds, message):
    cfg = _pipeline_with_performers(tmp_path, performers)
    with pytest.warns(DataWarning, match=message) as caught:
        run_fuse(cfg)
    assert str(caught[0].message).startswith(str(cfg.paths.scores / "rgb.parquet"))
    assert json.loads((cfg.paths.fusion / "weights.json").read_text())["cv"]["folds"] == folds


def test_three_validation_groups_fuse_without_a_warning(tmp_path):
    cfg = _pipeline_with_performers(tmp_path, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        run_fuse(cfg)


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
        ("groups", "sample groups differ"),
    ],
)
def test_mismatched_score_files_are_refused(tmp_path, change, message):
    cfg = _pipeline(tmp_path)
    rgb, skel = _tables(np.random.default_rng(10), (10, 10, 10), k=5)
    if change == "ids":
        skel.ids[3] = "other"
    elif change == "labels":
        skel.labels[4] = (skel.labels[4] + 1) % 5
    elif change == "groups":
        skel.groups[5] = "another recording"
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
    with pytest.raises(DataError, match="0 rows in split 'val'.*needs at least 2 samples"):
        run_fuse(cfg)
    rgb, skel = _tables(np.random.default_rng(11), (20, 1, 20), k=4)
    _write(cfg, rgb, skel)
    with pytest.raises(DataError, match="1 rows in split 'val'"):
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
