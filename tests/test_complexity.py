"""Parameters and FLOPs counted from the code, against Table 1."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from resnet_lib.models import complexity as cx
from resnet_lib.models import imagenet as im

TOLERANCE = 0.02  # Table 1 prints one decimal (e.g. 3.6 for 3.66): the paper's own rounding is up to ~2%


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_flops_within_two_percent_of_table1(depth):
    macs = cx.count_macs(cx.build_on_meta(lambda: im.imagenet_resnet(depth)))
    paper = cx.paper_macs()[str(depth)]
    assert abs(macs / paper - 1) < TOLERANCE, (depth, macs, paper)


def test_vgg19_flops_and_the_18_percent():
    rows = {r["name"]: r for r in cx.table1_summary((34,), plain=True, vgg=True)}
    assert abs(rows["VGG-19"]["rel_diff"]) < 0.005
    ratio = rows["plain-34"]["macs"] / rows["VGG-19"]["macs"]
    assert 0.175 < ratio < 0.19  # the paper: "only 18%"


def test_counter_counts_conv_and_fc_multiply_adds_only():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert cx.count_macs(conv, (3, 10, 10)) == 10 * 10 * 8 * 3 * 9
    net = nn.Sequential(conv, nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    assert cx.count_macs(net, (3, 10, 10)) == 10 * 10 * 8 * 3 * 9 + 8 * 5


def test_stride_on_3x3_costs_more_same_params():
    a = cx.build_on_meta(lambda: im.resnet50(stride_in="1x1"))
    b = cx.build_on_meta(lambda: im.resnet50(stride_in="3x3"))
    assert cx.count_params(a) == cx.count_params(b)
    extra = cx.count_macs(b) - cx.count_macs(a)
    # the first 1x1 conv of conv3_1, conv4_1, conv5_1 runs at 4x the positions: 3 x (3/4 x 102.76M)
    assert extra == 3 * (56 * 56 - 28 * 28) * 256 * 128


def test_table1_rows_read_from_the_network():
    rows = cx.table1(cx.build_on_meta(im.resnet34))
    by = {r["layer"]: r for r in rows}
    assert [by[k]["output"] for k in ("conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc")] == \
        ["112x112", "56x56", "28x28", "14x14", "7x7", "1x1"]
    assert by["conv3_x"]["blocks"] == "[3x3, 128; 3x3, 128] x4"
    assert by["total"]["params"] == cx.count_params(im.resnet34())
    assert sum(r["macs"] for r in rows[:-1]) == by["total"]["macs"]
    grid = cx.table1_grid((50,))
    assert grid[2]["50-layer"] == "[1x1, 128; 3x3, 128; 1x1, 512] x4"


def test_cifar_params_match_the_exact_counts():
    rows = cx.cifar_params((20, 56, 110))
    assert all(r["equal"] for r in rows)
    assert rows[0]["params"] == 269_722 and rows[0]["paper"] == "0.27M"


def test_counting_leaves_a_real_model_untouched():
    net = im.resnet18()
    before = net.conv1.weight.clone()
    cx.count_macs(net, (3, 64, 64))
    assert net.conv1.weight.device.type == "cpu" and torch.equal(net.conv1.weight, before)


def test_bad_input_size():
    with pytest.raises(ValueError, match="channels, height, width"):
        cx.count_macs(im.resnet18(), (224, 224))
