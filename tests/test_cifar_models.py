"""The CIFAR nets of Section 4.2: exact sizes, the three shortcut options, the identity argument."""
import io
import pickle

import pytest
import torch
import torch.nn.functional as F

from resnet_lib.base.paper import cifar_params_exact
from resnet_lib.models.blocks import BasicBlock, ZeroPadShortcut
from resnet_lib.models.cifar import CifarNetSpec, cifar_plain, cifar_resnet, count_parameters
from resnet_lib.models.imagenet import ImageNetSpec
from resnet_lib.models.registry import build_model


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110, 1202])
def test_parameter_counts_equal_table6_exactly(depth):
    expected = cifar_params_exact()[depth]
    assert count_parameters(cifar_resnet(depth)) == expected
    # option A shortcuts are parameter-free, so the plain twin has the same count
    assert count_parameters(cifar_plain(depth)) == expected


def test_output_shape_and_stage_sizes():
    net = cifar_resnet(20)
    x = torch.randn(4, 3, 32, 32)
    assert net(x).shape == (4, 10)
    feats = {}
    for name in ("layer1", "layer2", "layer3"):
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: feats.__setitem__(name, o.shape))
    net(x)
    assert feats == {"layer1": (4, 16, 32, 32), "layer2": (4, 32, 16, 16), "layer3": (4, 64, 8, 8)}
    assert len([m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]) == 19  # + fc = 20 layers


def test_option_a_is_zero_padded_subsample():
    sc = ZeroPadShortcut(16, 32, 2)
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0
    assert count_parameters(sc) == 0


def test_options_b_and_c_add_projections():
    a, b, c = (count_parameters(cifar_resnet(20, s)) for s in "ABC")
    # B: two projections (16->32, 32->64) with BN; C: a projection on all 9 shortcuts
    assert b - a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert c > b
    assert c - a == 3 * (16 * 16 + 32) + (16 * 32 + 64) + 2 * (32 * 32 + 64) + (32 * 64 + 128) + 2 * (64 * 64 + 128)


def test_zero_branch_block_is_identity():
    blk = BasicBlock(16, 16, residual=True).eval()
    torch.nn.init.zeros_(blk.bn2.weight)
    torch.nn.init.zeros_(blk.bn2.bias)
    x = F.relu(torch.randn(3, 16, 8, 8))  # blocks see post-ReLU inputs
    assert torch.equal(blk(x), x)
    plain = BasicBlock(16, 16, residual=False).eval()
    torch.nn.init.zeros_(plain.bn2.weight)
    torch.nn.init.zeros_(plain.bn2.bias)
    assert torch.count_nonzero(plain(x)) == 0  # without the shortcut, a zero branch erases the signal


@pytest.mark.parametrize("kw,match", [
    (dict(depth=21), "6n\\+2"), (dict(depth=2), "6n\\+2"), (dict(depth=20.0), "6n\\+2"),
    (dict(depth=20, shortcut="D"), "shortcut option 'D'"),
])
def test_bad_architecture_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        cifar_resnet(**kw)


def test_pickle_save_load_roundtrip():
    net = cifar_resnet(20, "B").eval()
    x = torch.randn(2, 3, 32, 32)
    clone = pickle.loads(pickle.dumps(net))
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert torch.equal(clone(x), net(x)) and torch.equal(loaded(x), net(x))


@pytest.mark.slow
def test_torch_compile_matches_eager():
    net = cifar_resnet(8).eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(net)
    torch.testing.assert_close(compiled(x), net(x), rtol=1e-4, atol=1e-4)


def test_specs_round_trip_through_the_dict_checkpoints_store():
    for spec in (CifarNetSpec(32, False, "B"), ImageNetSpec(50, shortcut="C", num_classes=7, small_input=True)):
        d = spec.to_dict()
        assert type(spec).from_dict(d) == spec and build_model(d).spec == spec
    assert CifarNetSpec.from_dict({"depth": 14}) == CifarNetSpec(14)  # older checkpoints: no kind, defaults
    with pytest.raises(ValueError, match="unknown keys"):
        CifarNetSpec.from_dict({"depth": 14, "width": 2})
    with pytest.raises(ValueError, match="unknown model kind 'vit'"):
        build_model({"kind": "vit"})
