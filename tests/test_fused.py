"""K seeds fused into one wide net (issue #10): the same numbers as K separate nets and K separate runs."""
import dataclasses

import pytest
import torch

from resnet_lib.campaign.fused_runs import check_fusable, train_fused
from resnet_lib.data.cifar import TensorLoader, load_cifar10, make_loaders
from resnet_lib.engine.config import TrainConfig
from resnet_lib.engine.loop import fit
from resnet_lib.experiments.cifar_runs import CifarRun
from resnet_lib.models.cifar import cifar_resnet
from resnet_lib.models.fused import fuse, fused_loss, unfuse


def _nets(k, **kw):
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(cifar_resnet(8, **kw).double())
    return out


@pytest.mark.parametrize("shortcut, residual", [("A", True), ("B", True), ("A", False)])
def test_fused_forward_backward_and_bn_equal_separate(shortcut, residual):
    """In float64, so that only a real mix-up between runs (not fp32 summation order) could fail it."""
    nets = _nets(3, shortcut=shortcut, residual=residual)
    wide = fuse(nets)
    torch.manual_seed(9)
    xs, ys = torch.randn(3, 8, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (3, 8))
    out = wide(torch.cat(list(xs), 1))
    assert out.shape == (8, 3, 10)
    fused_loss(out, ys.T).backward()
    for k, net in enumerate(nets):  # train mode: BN uses and updates its own batch statistics
        ref = net(xs[k])
        torch.testing.assert_close(out[:, k], ref, rtol=1e-10, atol=1e-12)
        torch.nn.functional.cross_entropy(ref.float(), ys[k]).backward()  # the engine's loss
    grads = [dict(n.named_parameters()) for n in nets]
    for state_k, k in zip(unfuse(wide), range(3)):
        for name, v in nets[k].state_dict().items():  # running stats after one step
            torch.testing.assert_close(state_k.state_dict()[name], v, rtol=1e-10, atol=1e-12)
    for name, p in wide.named_parameters():
        parts = p.grad.unbind(0) if name.startswith("fc.") else p.grad.chunk(3, 0)
        for k in range(3):
            # fp32 sums in another order; BN backward cancels large terms, so compare at gradient scale
            torch.testing.assert_close(parts[k], grads[k][name].grad, rtol=1e-6, atol=1e-9, msg=name)  # the loss is fp32


def test_fuse_refuses_mixed_architectures_and_warmup():
    with pytest.raises(ValueError, match="one architecture"):
        fuse([cifar_resnet(8), cifar_resnet(14)])
    cfg = TrainConfig(warmup=True)
    with pytest.raises(ValueError, match="warm-up"):
        check_fusable([CifarRun(110, train=cfg), CifarRun(110, train=dataclasses.replace(cfg, seed=1))])
    with pytest.raises(ValueError, match="differ only in their seed"):
        check_fusable([CifarRun(8), CifarRun(14)])


class _AsDouble:
    """A batch source giving float64 images, for training the engine's ``fit`` in float64."""

    def __init__(self, src):
        self.src, self.batch_size = src, src.batch_size

    def __len__(self):
        return len(self.src)

    def batches(self, epoch, start=0, rank=0, world=1):
        for x, y in self.src.batches(epoch, start, rank, world):
            yield x.double(), y


def _runs(iters, **kw):
    """Two seeds of ResNet-8 on 128 images in batches of 16: 8 batches an epoch, lr drops at 50% and 75%."""
    cfg = dataclasses.replace(TrainConfig(batch_size=16, precision="fp32", cuda_graph="off", **kw).with_iters(iters),
                              eval_every=iters)
    return [CifarRun(8, train=dataclasses.replace(cfg, seed=s), subset=128) for s in (3, 5)]


def _alone(run, data, dtype):
    """One run trained by the engine's ``fit`` exactly as ``run_cifar`` sets it up (seed, init, loaders)."""
    train, test = make_loaders(data, batch_size=run.train.batch_size, subset=run.subset, seed=run.train.seed)
    test = TensorLoader(test.x[:32], test.y[:32], 32, mean=test.mean)  # evaluation does not touch the weights
    torch.manual_seed(run.train.seed)
    net = cifar_resnet(run.depth, run.shortcut, run.residual).to(dtype)
    if dtype == torch.float64:
        train, test = _AsDouble(train), _AsDouble(test)
    res = fit(net, train, test, run.train, device="cpu", progress=False)
    return net, res


@pytest.fixture(scope="module")
def data():
    return load_cifar10()


def test_k_fused_runs_equal_k_separate_runs(data):
    """10 SGD steps (into a second epoch, across both lr drops) in float64: each fused run ends where the
    engine's ``fit`` ends with that run alone (own init, data order, augmentation, BN statistics), on every
    weight and buffer to 1e-9 (they agree bitwise here). float64 makes the check tight: fp32 kernels for
    grouped and ungrouped convs sum in different orders, float64 leaves only a real mix-up between runs."""
    runs = _runs(10)
    assert runs[0].train.milestones == (5, 8)
    nets, results = train_fused(runs, data, device="cpu", dtype=torch.float64)
    for r, net, res in zip(runs, nets, results):
        alone, res_alone = _alone(r, data, torch.float64)
        assert res["config"]["seed"] == r.train.seed and res["fused"]["seeds"] == [3, 5]
        for key in ("iteration", "lr", "train_err"):  # each run's own training tallies
            assert res["history"][key] == res_alone["history"][key], key
        assert res["history"]["train_loss"] == pytest.approx(res_alone["history"]["train_loss"], rel=1e-6)  # fp32 loss
        for name, v in alone.state_dict().items():
            torch.testing.assert_close(net.state_dict()[name], v, rtol=1e-9, atol=1e-11, msg=f"seed {r.train.seed} {name}")
    assert not torch.allclose(nets[0].conv1.weight, nets[1].conv1.weight)  # the runs differ: the check bites


def test_fused_fp32_stays_within_float_rounding(data):
    """In float32 grouped and ungrouped convolutions sum in different orders, and SGD at lr 0.1 amplifies
    such differences (the same net with oneDNN on and off drifts apart the same way). Over a few steps
    at a small lr the fused runs still agree with the runs alone to float rounding."""
    runs = _runs(6, lr=0.01)
    nets, _ = train_fused(runs, data, device="cpu")
    for r, net in zip(runs, nets):
        alone, _ = _alone(r, data, torch.float32)
        for name, v in alone.state_dict().items():
            if v.is_floating_point():
                torch.testing.assert_close(net.state_dict()[name], v, rtol=1e-4, atol=1e-5, msg=f"seed {r.train.seed} {name}")


def test_runs_with_the_warm_up_are_fused_after_it_and_end_where_they_end_alone(data, tmp_path):
    """ResNet-110's path on ResNet-8: each seed warms up alone (lr 0.001 until its own training error is below
    the bar), then the seeds train on fused from the furthest one's curve point. Each ends where it ends
    trained alone from start to end (fp32 at a small lr: to float rounding), with its own warm-up's end."""
    from resnet_lib.campaign.fused_runs import run_fused
    from resnet_lib.engine.checkpoint import load_model
    from resnet_lib.experiments.cifar_runs import run_cifar

    cfg = dataclasses.replace(TrainConfig(batch_size=16, lr=0.01, precision="fp32", cuda_graph="off", warmup=True,
                                          warmup_lr=0.001, warmup_window=1, warmup_until_err=0.8).with_iters(12),
                              eval_every=3)
    runs = [CifarRun(8, train=dataclasses.replace(cfg, seed=s), subset=128, test_subset=100) for s in (3, 4)]
    fused = run_fused(runs, tmp_path / "fused", device="cpu", progress=False, data=data)
    for r, res in zip(runs, fused):
        alone = run_cifar(r, tmp_path / "alone", device="cpu", progress=False, data=data)
        assert res["fused"]["k"] == 2 and "fused" not in alone
        assert res["warmup_ended_at"] == alone["warmup_ended_at"] is not None
        assert res["history"]["lr"] == alone["history"]["lr"] and res["history"]["iteration"] == [3, 6, 9, 12]
        assert res["history"]["train_loss"] == pytest.approx(alone["history"]["train_loss"], rel=1e-4)
        a, b = load_model(tmp_path / "fused" / r.slug), load_model(tmp_path / "alone" / r.slug)
        for name, v in a.state_dict().items():
            if v.is_floating_point():
                torch.testing.assert_close(v, b.state_dict()[name], rtol=1e-4, atol=1e-5, msg=name)
    assert len({res["warmup_ended_at"] for res in fused}) == 2  # the warm-ups end apart: the fusing waits


def test_a_damaged_fused_checkpoint_is_moved_aside_and_the_job_starts_again_from_the_runs_own(data, tmp_path):
    """A warm-up job whose fused checkpoint is cut short: moved aside with a warning, and the fused net starts
    again from the runs' own checkpoints at the fuse point; the job still ends where it ends undisturbed."""
    import warnings

    from resnet_lib.campaign.fused_runs import fused_slug, run_fused

    cfg = dataclasses.replace(TrainConfig(batch_size=16, lr=0.01, precision="fp32", cuda_graph="off", warmup=True,
                                          warmup_lr=0.001, warmup_window=1, warmup_until_err=0.8).with_iters(12),
                              eval_every=3)
    runs = [CifarRun(8, train=dataclasses.replace(cfg, seed=s), subset=128, test_subset=100) for s in (3, 4)]
    straight = run_fused(runs, tmp_path / "a", device="cpu", progress=False, data=data)
    assert run_fused(runs, tmp_path / "b", device="cpu", progress=False, data=data, stop_after=9) == {"interrupted_at": 9}
    ckpt = tmp_path / "b" / fused_slug(runs) / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = run_fused(runs, tmp_path / "b", device="cpu", progress=False, data=data)
    assert any("moved aside" in str(w.message) for w in caught)
    for a, b in zip(straight, again):
        assert a["history"] == b["history"] and a["final"] == b["final"]
