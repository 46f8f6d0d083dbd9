"""The skeleton branch: graphs, streams, the CTR-GCN-style network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmfc.config import SkelModelConfig
from mmfc.data.layouts import COCO17, NTU25
from mmfc.models import build_skel_model, skeleton_stream
from mmfc.models.graph import adjacency

torch.set_num_threads(1)

STREAMS = ("joint", "bone", "joint_motion", "bone_motion")


@pytest.mark.parametrize("layout, bones", [(NTU25, 24), (COCO17, 16)])
def test_adjacency(layout, bones):
    a = adjacency(layout)
    v = layout.num_joints
    assert a.shape == (3, v, v) and a.dtype == np.float32
    assert len(layout.bones) == bones
    # self-links live only in their own subset, as in CTR-GCN's spatial partition
    assert np.array_equal(a[0], np.eye(v))
    assert np.all(np.diag(a[1]) == 0) and np.all(np.diag(a[2]) == 0)
    inward, outward = a[1] > 0, a[2] > 0
    assert inward.sum() == bones and outward.sum() == bones
    assert np.array_equal(inward, outward.T)
    undirected = inward | outward
    assert np.array_equal(undirected, undirected.T)
    for sub in (a[1], a[2]):
        rows = sub.sum(1)
        assert np.allclose(rows[rows > 0], 1.0)
    # child -> parent: the parent gathers from its children
    child, parent = layout.bones[0]
    assert a[1][parent, child] > 0 and a[2][child, parent] == 1.0
    # every joint is connected: a tree over V joints has V - 1 bones
    assert bones == v - 1


def test_bone_stream():
    x = torch.randn(2, 3, 5, 25, 2)
    bone = skeleton_stream(x, "bone", NTU25)
    assert (bone[:, :, :, NTU25.center] == 0).all()
    for child, parent in NTU25.bones:
        assert torch.equal(bone[:, :, :, child], x[:, :, :, child] - x[:, :, :, parent])
    coco = skeleton_stream(torch.randn(1, 2, 4, 17, 1), "bone", COCO17)
    assert (coco[:, :, :, COCO17.center] == 0).all()


def test_motion_streams():
    x = torch.randn(2, 3, 6, 25, 2)
    motion = skeleton_stream(x, "joint_motion", NTU25)
    assert (motion[:, :, -1] == 0).all()
    assert torch.equal(motion[:, :, :-1], x[:, :, 1:] - x[:, :, :-1])
    bone_motion = skeleton_stream(x, "bone_motion", NTU25)
    bone = skeleton_stream(x, "bone", NTU25)
    assert torch.equal(bone_motion[:, :, :-1], bone[:, :, 1:] - bone[:, :, :-1])
    assert (bone_motion[:, :, -1] == 0).all() and (bone_motion[:, :, :, NTU25.center] == 0).all()
    assert torch.equal(skeleton_stream(x, "joint", NTU25), x)


def tiny(stream="joint", layout=NTU25, persons=2, classes=7):
    cfg = SkelModelConfig(stream=stream, base_channels=8, num_frames=16, num_persons=persons)
    return build_skel_model(cfg, classes, layout)


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("layout, channels, persons", [(NTU25, 3, 2), (COCO17, 2, 1)])
def test_output_shapes(stream, layout, channels, persons):
    torch.manual_seed(0)
    model = tiny(stream, layout, persons).eval()
    x = torch.randn(3, channels, 16, layout.num_joints, persons)
    logits, features = model.forward_intermediates(x)
    assert logits.shape == (3, 7)
    assert torch.equal(model(x), logits)  # forward: the logits alone
    assert model.feature_dims == [8, 16, 32, 32]
    assert [tuple(f.shape) for f in features] == [(3, d) for d in model.feature_dims]
    assert torch.isfinite(logits).all()


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = tiny()
    # alpha starts at 0 as in CTR-GCN, which hides the refinement convs on the first step.
    for name, p in model.named_parameters():
        if name.endswith("alpha"):
            p.data.fill_(0.5)
    logits, features = model.forward_intermediates(torch.randn(2, 3, 16, 25, 2))
    (logits.sum() + sum(f.sum() for f in features)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_model_applies_its_own_stream():
    torch.manual_seed(0)
    joint_model = tiny("joint").eval()
    bone_model = tiny("bone").eval()
    bone_model.load_state_dict(joint_model.state_dict())
    x = torch.randn(2, 3, 16, 25, 2)
    expected = joint_model(skeleton_stream(x, "bone", NTU25))
    got = bone_model(x)
    assert torch.allclose(got, expected, atol=1e-5)


def test_in_channels_from_config_or_layout():
    assert tiny(layout=COCO17, persons=1).in_channels == 2
    assert tiny().in_channels == 3
    cfg = SkelModelConfig(base_channels=8, in_channels=3, num_persons=1)
    assert build_skel_model(cfg, 4, COCO17).in_channels == 3


def test_wrong_input_shape_and_unknown_stream():
    with pytest.raises(ValueError, match="expected joints"):
        tiny()(torch.randn(1, 2, 16, 25, 2))
    with pytest.raises(ValueError, match="unknown skeleton stream 'angle'"):
        skeleton_stream(torch.zeros(1, 3, 4, 25, 1), "angle", NTU25)


def test_bf16_autocast_forward_backward_on_cpu():
    torch.manual_seed(0)
    model = tiny()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(2, 3, 16, 25, 2))
        loss = F.cross_entropy(logits.float(), torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss)
