"""fit's CPU step through torch.compile (engine.compiled): when it is used, that it trains the model's own
weights to what the eager step gives, and that a failing compilation falls back to the eager step."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from resnet_lib.data.cifar import TensorLoader
from resnet_lib.engine import compiled
from resnet_lib.engine.config import TrainConfig
from resnet_lib.engine.loop import fit
from resnet_lib.engine.step import make_optimizer
from resnet_lib.models.cifar import cifar_resnet

CPU = torch.device("cpu")


def test_when_fit_compiles(monkeypatch):
    long, short = TrainConfig(), TrainConfig().with_iters(compiled.AUTO_MIN_ITERS - 1)
    assert compiled.use_compile(CPU, long, 1) == (compiled.cxx_compiler() is not None)
    assert not compiled.use_compile(CPU, short, 1)                      # too short to repay the compilation
    assert not compiled.use_compile(CPU, long, 2)                       # not under DDP
    assert not compiled.use_compile(CPU, dataclasses.replace(long, compile="off"), 1)
    assert compiled.use_compile(CPU, dataclasses.replace(short, compile="on"), 1) or compiled.cxx_compiler() is None
    with pytest.raises(ValueError, match="for CPU runs"):
        compiled.use_compile(torch.device("cuda"), dataclasses.replace(long, compile="on"), 1)
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert not compiled.use_compile(CPU, long, 1)
    with pytest.raises(ValueError, match="needs a C\\+\\+ compiler"):
        compiled.use_compile(CPU, dataclasses.replace(long, compile="on"), 1)
    with pytest.raises(ValueError, match="compile must be"):
        TrainConfig(compile="yes")


def test_a_failing_compilation_falls_back_to_the_eager_step(monkeypatch):
    class Broken:
        def __call__(self, *a, **k):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

    torch.manual_seed(0)
    net = cifar_resnet(8)
    ref = copy.deepcopy(net)
    step = compiled.CompiledStep(net)
    step.fn = Broken()  # what a machine without a working compiler does on the first compiled call
    opt, opt_ref = make_optimizer(net, TrainConfig()), make_optimizer(ref, TrainConfig())
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    with pytest.warns(UserWarning, match="torch.compile failed on this machine .*InvalidCxxCompiler"):
        loss, _ = step(opt, x, y, CPU, False)
    assert step.state == "eager"
    from resnet_lib.engine.step import sgd_step
    loss_ref, _ = sgd_step(ref, opt_ref, x, y, CPU, False)
    assert torch.equal(loss, loss_ref)
    for a, b in zip(net.parameters(), ref.parameters()):
        assert torch.equal(a, b)


@pytest.mark.skipif(compiled.cxx_compiler() is None, reason="needs a C++ compiler for torch.compile")
def test_compiled_fit_trains_like_the_eager_one(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    results, nets = [], []
    for mode in ("off", "on"):
        train = TensorLoader(x, y, 32, augment=True, shuffle=True, drop_last=True)
        cfg = dataclasses.replace(TrainConfig(batch_size=32, precision="fp32", compile=mode).with_iters(12), eval_every=6)
        torch.manual_seed(0)
        net = cifar_resnet(8)
        results.append(fit(net, train, TensorLoader(x[:64], y[:64], 32), cfg, run_dir=tmp_path / mode, device="cpu",
                           progress=False))
        nets.append(net)
    eager, comp = results
    assert comp["compiled"] and not eager["compiled"]
    for u, v in zip(eager["history"]["train_loss"], comp["history"]["train_loss"]):
        assert abs(u - v) < 1e-3 * max(1.0, abs(u)), (eager["history"]["train_loss"], comp["history"]["train_loss"])
    for (name, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):  # float rounding apart
        assert torch.allclose(a.float(), b.float(), rtol=1e-2, atol=5e-3), (name, (a - b).abs().max().item())
    assert set(torch.load(tmp_path / "on" / "checkpoint.pt", weights_only=True)["model"]) == set(nets[0].state_dict())
