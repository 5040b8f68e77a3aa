"""Notebook 01's experiments: zero-branch identity, highway gates, identity learning, flow, multigrid."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from resnet_lib.experiments import residual_demo as rd
from resnet_lib.experiments import signal_flow as sf
from resnet_lib.models.blocks import BasicBlock
from resnet_lib.models.cifar import cifar_resnet


def test_zero_branch_block_is_exactly_the_identity():
    torch.manual_seed(0)
    x = torch.randn(8, 16).abs()
    block = rd.zero_branch(rd.MLPBlock(16))
    for mode in (block.train, block.eval):
        mode()
        assert torch.equal(block(x), x)
    conv = rd.zero_branch(BasicBlock(4, 4)).eval()
    xc = torch.randn(2, 4, 5, 5).abs()
    assert torch.equal(conv(xc), xc)
    plain = rd.zero_branch(rd.MLPBlock(16, residual=False))
    assert torch.equal(plain(x), torch.zeros_like(x))  # without a shortcut a zero branch kills the signal


def test_highway_gate_open_closed_and_cost():
    torch.manual_seed(0)
    x = torch.randn(32, 8)
    open_ = rd.HighwayBlock(8, gate_bias=-30.0).eval()
    assert torch.allclose(open_(x), x, atol=1e-6)
    closed = rd.HighwayBlock(8, gate_bias=30.0).eval()
    h = closed.relu(closed.bn2(closed.fc2(closed.relu(closed.bn1(closed.fc1(x))))))
    assert torch.allclose(closed(x), h, atol=1e-6)
    cost = rd.gate_cost(64, conv=True)
    assert cost["shortcut_params"] == 0
    assert cost["gate_params"] == 9 * 64 * 64 + 64
    assert 0.45 < cost["extra_fraction"] < 0.55


def test_toy_stacks_check_their_arguments():
    with pytest.raises(ValueError, match="even number"):
        rd.ToyMLP(5)
    with pytest.raises(ValueError, match="unknown block"):
        rd.ToyMLP(4, block="dense")
    assert len(rd.ToyMLP(10).blocks) == 4


def test_residual_stack_learns_the_identity_plain_does_not():
    plain = rd.learn_identity(4, 16, "plain", steps=200)
    res = rd.learn_identity(4, 16, "residual", steps=200)
    assert np.mean(res[-10:]) < 0.1 < np.mean(plain[-10:])


def test_gradient_flow_at_init_plain_explodes_residual_does_not():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    ratio = {}
    for residual in (False, True):
        torch.manual_seed(0)
        r = sf.flow_at_init(cifar_resnet(56, residual=residual), x, y)
        assert len(r["grad_norm"]) == 55 and len(r["act_std"]) == 27
        ratio[residual] = r["grad_norm"][0] / r["grad_norm"][-1]
    assert ratio[False] > 10 * ratio[True]


def test_flow_with_and_without_bn():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    with_bn, no_bn = sf.flow_sweep(x, y, (20,), progress=False), sf.flow_sweep(x, y, (20,), progress=False, bn=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in sf.without_bn(cifar_resnet(20)).modules())
    rows = sf.flow_bn_rows(with_bn, no_bn)
    assert [r["net"] for r in rows] == ["plain-20", "residual-20"]
    plain = rows[0]
    # BN keeps the forward signal's scale (Sec. 4.1); without it the plain net's signal shrinks
    assert 0.5 < plain["signal last/first block, BN"] < 2 and plain["signal last/first block, no BN"] < 0.5
    text = sf.flow_story(rows)
    assert "plain-20" in text and f"{plain['grad first/last layer, BN']:.3g}" in text


def test_degradation_sweep_records():
    torch.manual_seed(0)
    X, y = torch.randn(64, 12), torch.randint(0, 3, (64,))
    cfg = rd.ToyConfig(depths=(4, 6), width=8, epochs=2, batch_size=32)
    runs = rd.degradation_sweep(X, y, cfg, progress=False)
    assert [(r["block"], r["depth"]) for r in runs] == [("plain", 4), ("residual", 4), ("plain", 6), ("residual", 6)]
    assert all(len(r["curve"]) == 2 and 0 <= r["final"] <= 100 for r in runs)
    hw = rd.highway_sweep(X, y, cfg, depth=4, gate_biases=(-3.0, 3.0), progress=False)
    assert hw[0]["gate_init"] < 0.1 < 0.9 < hw[1]["gate_init"]


def test_small_cifar_is_stratified_and_standardised():
    X, y = rd.small_cifar(200, 8)
    assert X.shape == (200, 192)
    assert torch.bincount(y).tolist() == [20] * 10
    assert X.mean(0).abs().max() < 1e-4 and (X.std(0) - 1).abs().max() < 1e-4
    with pytest.raises(ValueError, match="must divide 32"):
        rd.small_cifar(10, 7)


def test_two_grid_converges_where_jacobi_stalls():
    mg = rd.multigrid_demo(n=63, sweeps=40)
    assert mg["jacobi"][-1] > 0.1
    assert mg["two_grid"][-1] < 1e-8
    with pytest.raises(ValueError, match="odd"):
        rd.multigrid_demo(n=64)
