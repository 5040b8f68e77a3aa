"""base.precision: the named policies, what each computes in, and how a run names its own."""
import copy
import dataclasses

import pytest
import torch
import torch.nn as nn

from resnet_lib.base import precision as P
from resnet_lib.engine.config import TrainConfig
from resnet_lib.models.cifar import cifar_resnet

CPU = torch.device("cpu")


def _dtypes(net, policy, x):
    """The dtype of every BN input and of every block's output (the identity path) in one forward pass."""
    seen = {"bn": set(), "block": set()}
    hooks = [m.register_forward_hook(lambda m, i, o: seen["bn"].add(i[0].dtype)) for m in net.modules()
             if isinstance(m, nn.BatchNorm2d)]
    hooks += [m.register_forward_hook(lambda m, i, o: seen["block"].add(o.dtype)) for m in net.modules()
              if type(m).__name__ in ("BasicBlock", "CifarBlock", "PlainBlock", "ResidualBlock")]
    P.attach(net, policy)
    with P.autocast(CPU, policy):
        out = net(x)
    for h in hooks:
        h.remove()
    return seen, out


def test_bf16_conv_keeps_bn_and_the_identity_path_in_fp32_where_bf16_does_not():
    torch.manual_seed(0)
    net, x = cifar_resnet(8), torch.randn(4, 3, 32, 32)
    bf16, _ = _dtypes(net, P.POLICIES["bf16"], x)
    mixed, out = _dtypes(net, P.POLICIES["bf16-conv"], x)
    assert bf16["bn"] == {torch.bfloat16} and mixed["bn"] == {torch.float32}
    assert mixed["block"] and mixed["block"] == {torch.float32} and bf16["block"] == {torch.bfloat16}
    out.float().sum().backward()  # the gradient flows back through the casts to every weight
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    twin = copy.deepcopy(net)  # a copy carries the hooks; detaching it leaves the original's alone
    fp32, _ = _dtypes(twin, P.POLICIES["fp32"], x)  # attach() to another policy drops the hooks
    assert fp32["bn"] == {torch.float32} and not P.attached(twin) and P.attached(net)
    P.attach(net, P.POLICIES["bf16-conv"])
    assert sum(len(m._forward_hooks) for m in net.modules()) == sum(isinstance(m, nn.Conv2d) for m in net.modules())


def test_the_conv_outputs_of_bf16_conv_are_the_bf16_convolutions_cast_up():
    """bf16-conv changes where the rounding stops, not the convolutions: its first conv output is bf16's, exactly."""
    torch.manual_seed(0)
    conv, x = nn.Conv2d(3, 8, 3, padding=1), torch.randn(2, 3, 8, 8)
    with P.autocast(CPU, P.POLICIES["bf16"]):
        ref = conv(x)
    P.attach(conv, P.POLICIES["bf16-conv"])
    with P.autocast(CPU, P.POLICIES["bf16-conv"]):
        got = conv(x)
    assert ref.dtype == torch.bfloat16 and got.dtype == torch.float32 and torch.equal(got, ref.float())


def test_names_legacy_values_and_errors():
    assert P.canonical("off") == "fp32" and P.canonical("bf16") == "bf16" and P.canonical(False) == "fp32"
    assert TrainConfig(precision="off").precision == "fp32"  # one name per policy: equal runs, equal identities
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="GPU"):
        P.resolve(CPU, "tf32")
    assert P.resolve(CPU, "auto").name == P.AUTO[P.auto_key(CPU)]
    assert P.from_label("bf16 autocast").name == "bf16" and P.from_label(None) is None
    assert {p.label for p in P.POLICIES.values()} >= {"fp32", "bf16 autocast"}  # the labels stored results use


def test_resolved_names_auto_and_leaves_a_named_policy(monkeypatch):
    cfg = TrainConfig()
    monkeypatch.setitem(P.AUTO, P.auto_key(CPU), "bf16")
    assert cfg.resolved(CPU).precision == "bf16"
    named = dataclasses.replace(cfg, precision="tf32")
    assert named.resolved(CPU) is named  # the Trainer, not the identity, checks that the device can run it
