"""Class-aware contrastive learning: masks, prototypes, the FR-Head formula, SupCon, weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmfc.config import CCLConfig, ConfigError
from mmfc.models import build_ccl
from mmfc.models.ccl import FRHeadLevel, confusion_masks, supcon_loss

torch.set_num_threads(1)


def logits_for(predictions: list[int], classes: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(predictions), classes).float() * 3.0


def test_confusion_masks_on_a_crafted_batch():
    labels = torch.tensor([0, 0, 1, 2])
    logits = logits_for([0, 1, 1, 1], 3)  # right, wrong (0 -> 1), right, wrong (2 -> 1)
    m = confusion_masks(logits, labels, 3)
    assert m.tp.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert m.fn.tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert m.fp.tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 1, 0]]


def identity_level(dim: int, classes: int) -> FRHeadLevel:
    level = FRHeadLevel(dim, classes, CCLConfig(dim=dim))
    with torch.no_grad():
        level.project.weight.copy_(torch.eye(dim))
        level.project.bias.zero_()
    return level


def test_prototypes_move_only_for_classes_with_true_positives():
    torch.manual_seed(0)
    level = identity_level(4, 3)
    before = level.prototypes.clone()
    f = F.normalize(torch.randn(4, 4), dim=1)
    labels = torch.tensor([0, 0, 1, 2])
    logits = logits_for([0, 0, 2, 1], 3)  # class 0: two TP; classes 1 and 2: none
    level.train()(f, logits, labels)
    expected0 = 0.9 * before[0] + 0.1 * f[:2].mean(0)
    assert torch.allclose(level.prototypes[0], expected0, atol=1e-6)
    assert torch.equal(level.prototypes[1:], before[1:])
    # evaluation batches leave them alone
    after = level.prototypes.clone()
    level.eval()(f, logits, labels)
    assert torch.equal(level.prototypes, after)
    assert "prototypes" in level.state_dict()


def reference_frhead(level: FRHeadLevel, feature, logits, labels) -> torch.Tensor:
    """docs/method.md, section 3, written out sample by sample, class by class."""
    k = logits.shape[1]
    f = F.normalize(level.project(feature), dim=1)
    p = logits.softmax(1)
    pred = logits.argmax(1)
    mu = level.prototypes
    total = 0.0
    for i in range(len(labels)):
        row_fn, row_fp = [], []
        for c in range(k):
            s = F.cosine_similarity(mu[c], f[i], dim=0)
            fn_term = fp_term = 0.0
            if c == labels[i]:
                fn_idx = [j for j in range(len(labels)) if labels[j] == c and pred[j] != c]
                fp_idx = [j for j in range(len(labels)) if pred[j] == c and labels[j] != c]
                if fn_idx:
                    centre = f[fn_idx].mean(0)
                    fn_term = (F.cosine_similarity(centre, f[i], dim=0) - 1) * (1 - p[i, c]) * 0.125
                if fp_idx:
                    centre = f[fp_idx].mean(0)
                    fp_term = (-F.cosine_similarity(centre, f[i], dim=0) - 1) * (1 - p[i, c]) * 0.125
            row_fn.append((s + fn_term) / 0.125)
            row_fp.append((s + fp_term) / 0.125)
        total = total + F.cross_entropy(torch.stack(row_fn)[None], labels[i : i + 1])
        total = total + F.cross_entropy(torch.stack(row_fp)[None], labels[i : i + 1])
    return total / len(labels)


def test_frhead_loss_matches_the_formula():
    torch.manual_seed(0)
    level = FRHeadLevel(6, 3, CCLConfig(dim=5)).eval()
    feature = torch.randn(6, 6)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    logits = torch.randn(6, 3)
    logits[0, 0] = logits[2, 0] = 5.0  # one TP of class 0, one FP of class 0
    got = level(feature, logits, labels)
    assert torch.allclose(got, reference_frhead(level, feature, logits, labels), atol=1e-5)


def test_weighted_loss_is_finite_and_trains_features_and_projections():
    torch.manual_seed(0)
    ccl = build_ccl(CCLConfig(), 4, [8, 16, 32, 32])
    features = [torch.randn(6, d, requires_grad=True) for d in (8, 16, 32, 32)]
    logits = torch.randn(6, 4)
    loss = ccl(features, logits, torch.tensor([0, 1, 2, 3, 0, 1]))
    assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in features)
    assert all(p.grad is not None for p in ccl.parameters())


def test_weight_and_level_alignment():
    torch.manual_seed(0)
    features = [torch.randn(4, 8), torch.randn(4, 16)]
    logits = torch.randn(4, 3)
    labels = torch.tensor([0, 1, 2, 0])
    ccl = build_ccl(CCLConfig(weight=0.1), 3, [8, 16])
    # deepest levels last: two features take the last two of [0.1, 0.2, 0.5, 1.0]
    assert ccl.level_weights == [0.5, 1.0]
    ccl.eval()
    per_level = [ccl.levels[str(i)](features[i], logits, labels) for i in range(2)]
    expected = 0.1 * (0.5 * per_level[0] + 1.0 * per_level[1])
    assert torch.allclose(ccl(features, logits, labels), expected, atol=1e-6)
    with pytest.raises(ConfigError, match="level_weights"):
        build_ccl(CCLConfig(), 3, [8] * 5)


@pytest.mark.parametrize("kind", ["frhead", "supcon"])
def test_zero_weight_contributes_exactly_zero(kind):
    ccl = build_ccl(CCLConfig(kind=kind, weight=0.0), 3, [8, 16, 32, 32])
    assert list(ccl.parameters()) == [] and list(ccl.buffers()) == []
    features = [torch.full((4, d), float("nan")) for d in (8, 16, 32, 32)]
    out = ccl(features, torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    assert out.item() == 0.0


def test_supcon_against_hand_computed_value():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    # anchor 0: positive 1 (sim 0), other 2 (sim -1): log(1 + e^-1)
    # anchor 1: positive 0 (sim 0), other 2 (sim 0): log 2; anchor 2 has no positive
    expected = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    assert supcon_loss(z, labels, tau=1.0).item() == pytest.approx(expected, abs=1e-6)
    # temperature divides the similarities
    expected_half = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    assert supcon_loss(z, labels, tau=0.5).item() == pytest.approx(expected_half, abs=1e-6)


def test_supcon_level_runs_through_build():
    torch.manual_seed(0)
    ccl = build_ccl(CCLConfig(kind="supcon"), 3, [8, 16])
    features = [torch.randn(6, 8, requires_grad=True), torch.randn(6, 16, requires_grad=True)]
    loss = ccl(features, torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2]))
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert features[0].grad.abs().sum() > 0


def test_runs_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    ccl = build_ccl(CCLConfig(), 3, [8])
    features = [torch.randn(4, 8).bfloat16()]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ccl(features, torch.randn(4, 3).bfloat16(), torch.tensor([0, 1, 2, 0]))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
