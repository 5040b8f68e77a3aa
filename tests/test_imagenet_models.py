"""The ImageNet networks of Table 1: torchvision parity, shortcut options, and clear errors."""
from __future__ import annotations

import pytest
import torch
import torchvision

from resnet_lib.models import blocks
from resnet_lib.models import imagenet as im
from resnet_lib.models.complexity import build_on_meta, count_params

DEPTHS = [18, 34, 50, 101, 152]


@pytest.mark.parametrize("depth", DEPTHS)
def test_torchvision_state_dict_loads_strictly_and_outputs_match(depth):
    r = im.torchvision_parity(depth, image_size=64)
    assert r["params_equal"] and r["params_ours"] == r["params_torchvision"]
    assert r["max_abs_output_diff"] < 1e-4


@pytest.mark.parametrize("depth", DEPTHS)
def test_parameter_counts_equal_torchvision_for_both_stride_placements(depth):
    theirs = count_params(build_on_meta(lambda: getattr(torchvision.models, f"resnet{depth}")()))
    for stride_in in ("1x1", "3x3"):
        assert count_params(build_on_meta(lambda: im.imagenet_resnet(depth, stride_in=stride_in))) == theirs


def test_stride_placement_moves_the_stride():
    paper, tv = im.resnet50(stride_in="1x1"), im.resnet50(stride_in="3x3")
    assert paper.layer2[0].conv1.stride == (2, 2) and paper.layer2[0].conv2.stride == (1, 1)
    assert tv.layer2[0].conv1.stride == (1, 1) and tv.layer2[0].conv2.stride == (2, 2)


def test_option_a_is_parameter_free_and_defined_for_bottlenecks():
    for depth in (34, 50):
        a = build_on_meta(lambda: im.imagenet_resnet(depth, shortcut="A"))
        b = build_on_meta(lambda: im.imagenet_resnet(depth, shortcut="B"))
        projections = sum(count_params(m.downsample) for m in b.modules() if getattr(m, "downsample", None) is not None)
        assert count_params(a) == count_params(b) - projections
        assert not any(isinstance(getattr(m, "downsample", None), torch.nn.Sequential) for m in a.modules())
    net = im.resnet50(shortcut="A", num_classes=7, small_input=True).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_zero_pad_shortcut_subsamples_and_pads_with_zeros():
    x = torch.randn(2, 4, 8, 8)
    out = blocks.ZeroPadShortcut(4, 10, stride=2)(x)
    assert out.shape == (2, 10, 4, 4)
    assert torch.equal(out[:, :4], x[:, :, ::2, ::2])
    assert out[:, 4:].abs().sum() == 0


def test_option_c_projects_every_shortcut():
    b, c = im.resnet34(shortcut="B"), im.resnet34(shortcut="C")
    assert sum(m.downsample is not None for m in c.modules() if isinstance(m, im.BasicBlock)) == 16
    assert sum(m.downsample is not None for m in b.modules() if isinstance(m, im.BasicBlock)) == 3
    assert count_params(c) > count_params(b)


def test_plain_nets_have_no_shortcuts_and_differ_from_resnets_only_by_projections():
    plain, res = im.plain34(), im.resnet34()
    assert all(m.downsample is None and not m.residual for m in plain.modules() if isinstance(m, im.BasicBlock))
    projections = sum(count_params(m.downsample) for m in res.modules()
                      if isinstance(m, im.BasicBlock) and m.downsample is not None)
    assert count_params(plain) == count_params(res) - projections
    assert im.plain18().fc.out_features == 1000


def test_forward_features_and_small_input():
    net = im.resnet18(small_input=True, num_classes=200).eval()
    with torch.no_grad():
        f = net.forward_features(torch.randn(1, 3, 64, 64))
    assert f.shape == (1, net.num_features, 8, 8) and net.num_features == 512
    assert im.resnet50().num_features == 2048


def test_vgg19_builds_with_its_parameters():
    assert count_params(build_on_meta(im.vgg19)) == 143_667_240


@pytest.mark.parametrize("kw, match", [
    (dict(depth=20), "Table 1's ImageNet depths"),
    (dict(depth=50, shortcut="D"), "unknown shortcut option"),
    (dict(depth=50, stride_in="7x7"), "unknown stride_in"),
    (dict(depth=18, num_classes=0), "num_classes"),
])
def test_bad_arguments_are_named(kw, match):
    depth = kw.pop("depth")
    with pytest.raises(ValueError, match=match):
        im.imagenet_resnet(depth, **kw)


def test_mismatched_state_dict_names_what_differs():
    sd = im.resnet18().state_dict()
    with pytest.raises(ValueError, match="missing keys"):
        im.load_torchvision_state_dict(im.resnet34(), sd)
    with pytest.raises(ValueError, match="shape mismatches.*conv1.weight"):
        im.load_torchvision_state_dict(im.resnet18(small_input=True), sd)
    with pytest.raises(ValueError, match="unexpected keys"):
        im.load_torchvision_state_dict(im.resnet18(), {**sd, "extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected keys.*downsample"):  # option A has no projections to load into
        im.load_torchvision_state_dict(im.resnet18(shortcut="A"), sd)
