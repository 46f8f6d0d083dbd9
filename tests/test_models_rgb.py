"""The RGB branch: shapes, gradients, the temporal modules' exact behaviour, ImageNet loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmfc.config import RGBModelConfig
from mmfc.errors import DataError
from mmfc.models import build_rgb_model, load_pretrained
from mmfc.models.temporal import MotionAttention, TemporalAggregation, apply_temporal_conv, temporal_shift

torch.set_num_threads(1)

BLOCKS = ("plain", "tsm", "ma", "ta", "staa")
SEGMENTS = 4


def tiny(block: str, depth: int, classes: int = 5, width: int = 8, fragment_width: int = 0) -> torch.nn.Module:
    cfg = RGBModelConfig(
        depth=depth, base_width=width, block=block, segments=SEGMENTS, input_size=32, dropout=0.5, fragment_width=fragment_width
    )
    return build_rgb_model(cfg, classes)


def clips(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(n, SEGMENTS, 3, size, size)


@pytest.mark.parametrize("depth", [18, 34, 50])
@pytest.mark.parametrize("block", BLOCKS)
def test_output_shapes(block, depth):
    torch.manual_seed(0)
    model = tiny(block, depth).eval()
    x = clips()
    logits, features = model.forward_intermediates(x)
    assert logits.shape == (2, 5)
    assert torch.equal(model(x), logits)  # forward: the logits alone
    expansion = 4 if depth == 50 else 1
    assert model.feature_dims == [8 * expansion, 16 * expansion, 32 * expansion, 64 * expansion]
    assert [tuple(f.shape) for f in features] == [(2, d) for d in model.feature_dims]
    assert torch.isfinite(logits).all()


def assert_every_parameter_gets_a_gradient(model: torch.nn.Module) -> None:
    # The zero-initialised MA gate would stop the gradient to everything behind it on the
    # first step; a random gate makes every path visible to the test.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    logits, features = model.forward_intermediates(clips())
    (logits.sum() + sum(f.sum() for f in features)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("block", BLOCKS)
def test_every_parameter_gets_a_gradient(block):
    torch.manual_seed(0)
    assert_every_parameter_gets_a_gradient(tiny(block, 50))


@pytest.mark.parametrize("block", BLOCKS)
def test_res2net_widths(block):
    torch.manual_seed(0)
    model = tiny(block, 50, fragment_width=26)
    # Fragments of floor(8 * 2^i * 26 / 64) = 3, 6, 13, 26 channels; the outputs keep R50's.
    stages = (model.layer1, model.layer2, model.layer3, model.layer4)
    assert [stage[0].conv1.out_channels for stage in stages] == [12, 24, 52, 104]
    assert model.feature_dims == [32, 64, 128, 256]
    logits, features = model.forward_intermediates(clips())
    assert logits.shape == (2, 5)
    assert [tuple(f.shape) for f in features] == [(2, d) for d in model.feature_dims]
    assert_every_parameter_gets_a_gradient(model)


def test_temporal_shift_moves_one_eighth_each_way_with_zero_padding():
    n, t, c = 2, 4, 16
    x = torch.arange(n * t * c * 2 * 2, dtype=torch.float32).view(n * t, c, 2, 2) + 1
    out = temporal_shift(x, t).view(n, t, c, 2, 2)
    src = x.view(n, t, c, 2, 2)
    fold = c // 8
    # channels [0, 2): frame t holds frame t+1; the last frame gets zeros
    assert torch.equal(out[:, :-1, :fold], src[:, 1:, :fold])
    assert (out[:, -1, :fold] == 0).all()
    # channels [2, 4): frame t holds frame t-1; the first frame gets zeros
    assert torch.equal(out[:, 1:, fold : 2 * fold], src[:, :-1, fold : 2 * fold])
    assert (out[:, 0, fold : 2 * fold] == 0).all()
    assert torch.equal(out[:, :, 2 * fold :], src[:, :, 2 * fold :])
    # channels_last input is shifted the same way
    shifted_cl = temporal_shift(x.contiguous(memory_format=torch.channels_last), t)
    assert torch.equal(shifted_cl, out.view_as(x))


@pytest.mark.parametrize("train", [True, False])
def test_motion_attention_is_identity_at_init(train):
    torch.manual_seed(0)
    ma = MotionAttention(32, SEGMENTS, reduction=4).train(train)
    x = torch.relu(torch.randn(2 * SEGMENTS, 32, 6, 6))
    assert torch.equal(ma(x), x)


def test_motion_attention_responds_to_motion_only():
    torch.manual_seed(0)
    ma = MotionAttention(16, SEGMENTS, reduction=4).eval()
    torch.nn.init.ones_(ma.expand_bn.weight)
    ma.motion_conv.weight.data.zero_()
    ma.motion_conv.weight.data[:, :, 1, 1] = 1.0  # DWConv = identity, so M = Xr(t+1) - Xr(t)
    static = torch.rand(1, 1, 16, 5, 5).expand(1, SEGMENTS, 16, 5, 5).reshape(SEGMENTS, 16, 5, 5)
    assert torch.allclose(ma(static), static, atol=1e-6)  # no motion: gate sigmoid(0) - 0.5 = 0
    moving = torch.rand(SEGMENTS, 16, 5, 5)
    assert not torch.allclose(ma(moving), moving)


def test_temporal_conv_matches_a_loop_over_time():
    torch.manual_seed(0)
    ta = TemporalAggregation(16, SEGMENTS)
    conv = ta.tconvs[0]
    torch.nn.init.normal_(conv.weight)
    x = torch.randn(2 * SEGMENTS, 4, 3, 3)
    out = apply_temporal_conv(conv, x, SEGMENTS).view(2, SEGMENTS, 4, 3, 3)
    src = x.view(2, SEGMENTS, 4, 3, 3)
    w = conv.weight[:, 0, :]  # [C, 3]: taps at t-1, t, t+1
    for t in range(SEGMENTS):
        expected = w[:, 1, None, None] * src[:, t]
        if t > 0:
            expected = expected + w[:, 0, None, None] * src[:, t - 1]
        if t < SEGMENTS - 1:
            expected = expected + w[:, 2, None, None] * src[:, t + 1]
        assert torch.allclose(out[:, t], expected, atol=1e-5)


def randomise_bn(ta: TemporalAggregation) -> None:
    for bn in ta.bns:
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        torch.nn.init.uniform_(bn.weight, 0.5, 1.5)
        torch.nn.init.uniform_(bn.bias, -0.5, 0.5)


def fragment_path(ta: TemporalAggregation, i: int, x: torch.Tensor) -> torch.Tensor:
    """The plain 3x3 path of fragment i + 2: ReLU(BN(conv3x3(x))) in eval mode."""
    conv, bn = ta.convs[i], ta.bns[i]
    y = F.conv2d(x, conv.weight, stride=conv.stride, padding=1)
    y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps)
    return F.relu(y)


@pytest.mark.parametrize("stride", [1, 2])
def test_ta_without_hierarchy_equals_plain_3x3_paths(stride):
    torch.manual_seed(0)
    ta = TemporalAggregation(16, SEGMENTS, stride=stride, chain=False).eval()
    randomise_bn(ta)
    x = torch.relu(torch.randn(2 * SEGMENTS, 16, 8, 8))
    pieces = x.chunk(4, dim=1)
    first = pieces[0] if stride == 1 else F.avg_pool2d(pieces[0], 3, stride, 1)
    expected = torch.cat([first] + [fragment_path(ta, i, pieces[i + 1]) for i in range(3)], dim=1)
    assert torch.allclose(ta(x), expected, atol=1e-5)


def test_ta_hierarchy_feeds_each_fragment_the_previous_output():
    torch.manual_seed(0)
    ta = TemporalAggregation(16, SEGMENTS, chain=True).eval()
    randomise_bn(ta)
    x = torch.relu(torch.randn(2 * SEGMENTS, 16, 8, 8))
    pieces = x.chunk(4, dim=1)
    outputs = [pieces[0]]
    for i in range(3):
        outputs.append(fragment_path(ta, i, pieces[i + 1] + outputs[-1]))
    assert torch.allclose(ta(x), torch.cat(outputs, dim=1), atol=1e-5)


def test_bf16_autocast_forward_backward_on_cpu():
    torch.manual_seed(0)
    model = tiny("staa", 18)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, features = model.forward_intermediates(clips())
        loss = F.cross_entropy(logits.float(), torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_wrong_segment_count_is_rejected():
    with pytest.raises(ValueError, match="expected clips"):
        tiny("plain", 18)(torch.randn(1, SEGMENTS + 1, 3, 32, 32))


# ---------------------------------------------------------------------------------------------
# ImageNet weights in torchvision's layout, written here from the ResNet definition


def torchvision_state(depth: int, width: int, classes: int) -> dict[str, torch.Tensor]:
    bottleneck = depth == 50
    counts = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}[depth]
    expansion = 4 if bottleneck else 1
    state: dict[str, torch.Tensor] = {}

    def conv(name, cout, cin, k):
        state[f"{name}.weight"] = torch.randn(cout, cin, k, k)

    def bn(name, c):
        state[f"{name}.weight"] = torch.rand(c) + 0.5
        state[f"{name}.bias"] = torch.randn(c)
        state[f"{name}.running_mean"] = torch.randn(c)
        state[f"{name}.running_var"] = torch.rand(c) + 0.5
        state[f"{name}.num_batches_tracked"] = torch.tensor(7)

    conv("conv1", width, 3, 7)
    bn("bn1", width)
    inplanes = width
    for stage, count in enumerate(counts):
        planes = width * 2**stage
        for b in range(count):
            p = f"layer{stage + 1}.{b}"
            if bottleneck:
                conv(f"{p}.conv1", planes, inplanes, 1)
                bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3)
                bn(f"{p}.bn2", planes)
                conv(f"{p}.conv3", planes * 4, planes, 1)
                bn(f"{p}.bn3", planes * 4)
            else:
                conv(f"{p}.conv1", planes, inplanes, 3)
                bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3)
                bn(f"{p}.bn2", planes)
            if b == 0 and (stage > 0 or inplanes != planes * expansion):
                conv(f"{p}.downsample.0", planes * expansion, inplanes, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    state["fc.weight"] = torch.randn(classes, inplanes)
    state["fc.bias"] = torch.randn(classes)
    return state


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("block", ["plain", "staa"])
def test_load_pretrained_fills_every_backbone_weight(tmp_path, depth, block):
    torch.manual_seed(0)
    source = torchvision_state(depth, 16, classes=1000)
    path = tmp_path / "resnet.pth"
    torch.save(source, path)
    model = tiny(block, depth, classes=5, width=16)
    missing, unexpected = load_pretrained(model, path)
    # 1000 classes in the file, 5 in the model: fc is skipped on both sides
    assert unexpected == ["fc.bias", "fc.weight"]
    temporal = {k for k in model.state_dict() if ".ma." in k or ".ta.tconvs." in k}
    assert set(missing) == temporal | {"fc.weight", "fc.bias"}
    state = model.state_dict()
    for key, value in state.items():
        if key in source and not key.startswith("fc."):
            assert torch.equal(value, source[key]), key
    for key in (k for k in state if ".ta.convs." in k):
        block_key, rest = key.split(".ta.convs.")
        fragment = int(rest.split(".")[0]) + 1
        w = source[f"{block_key}.conv2.weight"].shape[0] // 4
        diagonal = source[f"{block_key}.conv2.weight"][fragment * w : (fragment + 1) * w, fragment * w : (fragment + 1) * w]
        assert torch.equal(state[key], diagonal), key
    for key in (k for k in state if ".ta.bns." in k and k.endswith("running_var")):
        block_key, rest = key.split(".ta.bns.")
        fragment = int(rest.split(".")[0]) + 1
        w = source[f"{block_key}.bn2.running_var"].shape[0] // 4
        assert torch.equal(state[key], source[f"{block_key}.bn2.running_var"][fragment * w : (fragment + 1) * w])


def test_load_pretrained_keeps_fc_when_class_count_matches(tmp_path):
    source = torchvision_state(18, 8, classes=5)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.items()}}, path)
    model = tiny("plain", 18, classes=5)
    missing, unexpected = load_pretrained(model, path)
    assert missing == [] and unexpected == []
    assert torch.equal(model.fc.weight, source["fc.weight"])


def test_load_pretrained_rejects_bad_files(tmp_path):
    model = tiny("plain", 18)
    with pytest.raises(DataError, match="no such"):
        load_pretrained(model, tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="garbage.pth"):
        load_pretrained(model, garbage)
    foreign = tmp_path / "foreign.pth"
    torch.save({"blocks.0.gcn.alpha": torch.zeros(1)}, foreign)
    with pytest.raises(DataError, match="no ResNet weights"):
        load_pretrained(model, foreign)
    wide = tmp_path / "wide.pth"
    torch.save(torchvision_state(18, 16, classes=5), wide)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DataError, match="conv1.weight"):
        load_pretrained(model, wide)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_load_pretrained_refuses_torchvision_widths_for_res2net_widths(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision_state(50, 8, classes=5), path)
    model = tiny("staa", 50, fragment_width=26)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DataError, match=r"layer1\.0\.conv1\.weight.*fragment_width = 0"):
        load_pretrained(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
