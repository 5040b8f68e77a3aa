"""The CUDA-graph training step: it must compute what the eager step computes.

The GPU tests skip on a machine without CUDA (CI's); they ran on the lent GPU (see docs/gpu.md's GPU
section). This file also runs as a plain script there, where pytest may be missing:
    PYTHONPATH=. python tests/test_cuda_graph.py
"""
from __future__ import annotations

import copy
import dataclasses
import sys

import pytest
import torch

from resnet_lib.data.cifar import TensorLoader
from resnet_lib.engine.config import TrainConfig
from resnet_lib.engine.cuda_graph import CudaGraphStep, use_cuda_graph
from resnet_lib.engine.loop import fit
from resnet_lib.engine.step import make_optimizer, sgd_step
from resnet_lib.models.cifar import cifar_resnet

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _weights_close(a, b, tol):
    worst = max((x.float() - y.float()).abs().max().item() for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert worst < tol, f"weights differ by {worst}"
    return worst


def test_graph_setting_is_checked_before_training():
    cpu = torch.device("cpu")
    assert not use_cuda_graph(cpu, TrainConfig(), 1)          # auto: only on CUDA
    with pytest.raises(ValueError, match="needs a CUDA device"):
        use_cuda_graph(cpu, TrainConfig(cuda_graph="on"), 1)
    with pytest.raises(ValueError, match="cuda_graph must be"):
        TrainConfig(cuda_graph="yes")


@needs_cuda
def test_graph_step_equals_eager_step_across_lr_changes():
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    dev = torch.device("cuda")
    torch.manual_seed(0)
    a = cifar_resnet(20).to(dev)
    b = copy.deepcopy(a)
    cfg = TrainConfig()
    oa, ob = make_optimizer(a, cfg), make_optimizer(b, cfg)
    graph = CudaGraphStep(b, ob, dev, bf16=False)
    g = torch.Generator(device=dev).manual_seed(1)
    losses = []
    for i in range(12):
        lr = 0.1 if i < 6 else 0.01  # a drop: the step is captured again
        for o in (oa, ob):
            o.param_groups[0]["lr"] = lr
        x = torch.randn(32, 3, 32, 32, device=dev, generator=g)
        y = torch.randint(0, 10, (32,), device=dev, generator=g)
        oa.zero_grad(set_to_none=True)
        la, wa = sgd_step(a, oa, x, y, dev, False)
        lb, wb = graph(x, y)
        losses.append((la.item(), lb.item()))
        assert abs(wa.item() - wb.item()) <= 1  # an argmax at a near-tie may differ
    assert graph.captures == 2, "one capture per learning rate"
    for la, lb in losses:
        assert abs(la - lb) < 1e-4 * max(1, abs(la)), losses
    _weights_close(a, b, 1e-4)


@needs_cuda
def test_fit_with_graph_matches_fit_without(tmp_path):
    dev = torch.device("cuda")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (640, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (640,), generator=g)
    results, models = [], []
    for mode in ("off", "on"):
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        train = TensorLoader(x, y, 64, augment=True, shuffle=True, drop_last=True, device=dev)
        test = TensorLoader(x[:128], y[:128], 64, device=dev)
        cfg = dataclasses.replace(TrainConfig(batch_size=64, precision="fp32", cuda_graph=mode, warmup=True, warmup_window=10,
                                              warmup_until_err=0.95).with_iters(60), eval_every=20)
        torch.manual_seed(0)
        m = cifar_resnet(20)
        results.append(fit(m, train, test, cfg, run_dir=tmp_path / mode, device=dev, progress=False))
        models.append(m)
    eager, graphed = results
    assert graphed["cuda_graph"] and not eager["cuda_graph"]
    assert graphed["graph_captures"] >= 2  # warm-up lr, then the schedule's
    for k in ("train_loss", "test_loss"):
        for u, v in zip(eager["history"][k], graphed["history"][k]):
            assert abs(u - v) < 1e-3 * max(1, abs(u)), (k, eager["history"][k], graphed["history"][k])
    _weights_close(*models, 1e-3)


@needs_cuda
def test_fused_graph_step_equals_fused_eager_step():
    from resnet_lib.campaign.fused_runs import FusedGraphStep, fused_step
    from resnet_lib.models.fused import fuse

    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    dev, k = torch.device("cuda"), 3
    nets = []
    for s in range(k):
        torch.manual_seed(s)
        nets.append(cifar_resnet(20))
    a = fuse(nets).to(dev)
    b = copy.deepcopy(a)
    oa, ob = make_optimizer(a, TrainConfig()), make_optimizer(b, TrainConfig())
    graph = FusedGraphStep(b, ob, dev, bf16=False)
    g = torch.Generator(device=dev).manual_seed(1)
    for _ in range(8):
        x = torch.randn(32, 3 * k, 32, 32, device=dev, generator=g)
        y = torch.randint(0, 10, (32, k), device=dev, generator=g)
        oa.zero_grad(set_to_none=True)
        la, _ = fused_step(a, oa, x, y, dev, False)
        lb, _ = graph(x, y)
        assert la.shape == (k,) and torch.allclose(la, lb, rtol=1e-4, atol=1e-5), (la, lb)
    assert graph.captures == 1
    _weights_close(a, b, 1e-4)


# Issue #25: the graph is checked in what it trains: every policy, channels-last (bf16's format), ResNet-56
# as well as ResNet-20. On a GPU the graphed step against the eager one; on a CPU (CI) the same code, eager
# both ways, so that a GPU session is not lost to a bug of the check.
GPU_POLICIES = ("fp32", "tf32", "bf16", "bf16-conv")
STEP_TOL = {"fp32": 1e-4, "tf32": 1e-3, "bf16": 2e-2, "bf16-conv": 2e-2}  # weights after 8 steps


def _policy_step_check(dev, policy_name, depth, steps=8):
    """The step of ``policy_name`` on ResNet-``depth`` in channels-last, replayed from a CUDA graph (on a GPU)
    against the same step run eagerly, across an lr change (a new capture)."""
    from resnet_lib.base.precision import attach, resolve, set_backends

    policy = resolve(dev, policy_name)
    set_backends(dev, policy)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.manual_seed(0)
    net = cifar_resnet(depth).to(dev, memory_format=torch.channels_last)
    a, b = attach(net, policy), attach(copy.deepcopy(net), policy)
    oa, ob = make_optimizer(a, TrainConfig()), make_optimizer(b, TrainConfig())
    graphed = dev.type == "cuda"
    step_b = CudaGraphStep(b, ob, dev, policy.autocast) if graphed else None
    g = torch.Generator(device=dev).manual_seed(1)
    for i in range(steps):
        for o in (oa, ob):
            o.param_groups[0]["lr"] = 0.1 if i < steps // 2 else 0.01
        x = torch.randn(32, 3, 32, 32, device=dev, generator=g).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (32,), device=dev, generator=g)
        oa.zero_grad(set_to_none=True)
        la, _ = sgd_step(a, oa, x, y, dev, policy.autocast)
        if graphed:
            lb, _ = step_b(x, y)
        else:
            ob.zero_grad(set_to_none=True)
            lb, _ = sgd_step(b, ob, x, y, dev, policy.autocast)
        assert abs(la.item() - lb.item()) < 10 * STEP_TOL[policy_name] * max(1, abs(la.item())), (i, la, lb)
    assert step_b is None or step_b.captures == 2, "one capture per learning rate"
    return _weights_close(a, b, STEP_TOL[policy_name])


@needs_cuda
@pytest.mark.parametrize("depth", [20, 56])
@pytest.mark.parametrize("policy", GPU_POLICIES)
def test_graph_step_equals_eager_step_in_every_policy(policy, depth):
    _policy_step_check(torch.device("cuda"), policy, depth)


@pytest.mark.parametrize("policy", ["fp32", "bf16", "bf16-conv"])
def test_policy_step_check_runs_on_a_cpu(policy):
    assert _policy_step_check(torch.device("cpu"), policy, 8, steps=4) == 0.0  # eager both ways: bitwise


def _policy_fit_check(tmp_path, dev, policy, depth, modes):
    """``fit`` in ``policy`` with channels-last, cuda_graph ``modes[0]`` against ``modes[1]``: the same curve
    and weights (within the policy's tolerance)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (384, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (384,), generator=g)
    results, models = [], []
    for arm, mode in enumerate(modes):
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        train = TensorLoader(x, y, 64, augment=True, shuffle=True, drop_last=True, device=dev, channels_last=True)
        test = TensorLoader(x[:128], y[:128], 64, device=dev, channels_last=True)
        cfg = dataclasses.replace(TrainConfig(batch_size=64, precision=policy, channels_last="on", cuda_graph=mode,
                                              compile="off").with_iters(24), eval_every=12)
        torch.manual_seed(0)
        m = cifar_resnet(depth)
        results.append(fit(m, train, test, cfg, run_dir=tmp_path / f"{arm}_{mode}", device=dev, progress=False))
        models.append(m)
    a, b = results
    assert a["channels_last"] and b["channels_last"] and a["cuda_graph"] == (modes[0] == "on")
    for k in ("train_loss", "test_loss"):
        for u, v in zip(a["history"][k], b["history"][k]):
            assert abs(u - v) < 10 * STEP_TOL[policy] * max(1, abs(u)), (k, a["history"][k], b["history"][k])
    return _weights_close(*models, 10 * STEP_TOL[policy])


@needs_cuda
@pytest.mark.parametrize("depth", [20, 56])
@pytest.mark.parametrize("policy", GPU_POLICIES)
def test_fit_with_graph_matches_fit_without_in_every_policy(tmp_path, policy, depth):
    _policy_fit_check(tmp_path, torch.device("cuda"), policy, depth, ("off", "on"))


@pytest.mark.parametrize("policy", ["fp32", "bf16-conv"])
def test_policy_fit_check_runs_on_a_cpu(tmp_path, policy):
    assert _policy_fit_check(tmp_path, torch.device("cpu"), policy, 8, ("off", "off")) == 0.0


def _fused_job_two_ways(tmp_path, dev, modes, depth=20):
    """Two seeds of ResNet-``depth`` in one fused net, trained by ``run_fused`` in one go with cuda_graph
    ``modes[0]`` and, with ``modes[1]``, stopped at 25 (mid-epoch: 10 batches an epoch) and resumed from the
    job's checkpoint; then each run's own folder written. Both arms must agree (fp32; synthetic images: no CIFAR-10 needed)."""
    from resnet_lib.campaign.fused_runs import run_fused
    from resnet_lib.data.cifar import Cifar10
    from resnet_lib.engine.checkpoint import load_model
    from resnet_lib.experiments.cifar_runs import CifarRun

    g = torch.Generator().manual_seed(0)
    data = Cifar10(torch.randint(0, 256, (640, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(640) % 10,
                   torch.randint(0, 256, (200, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(200) % 10)
    out, runs = [], []
    for arm, mode in enumerate(modes):
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        cfg = dataclasses.replace(TrainConfig(batch_size=64, precision="fp32", cuda_graph=mode).with_iters(40), eval_every=10)
        runs.append([CifarRun(depth, train=dataclasses.replace(cfg, seed=s)) for s in (1, 2)])
        folder = tmp_path / f"{arm}_{mode}"
        if arm == 1:
            part = run_fused(runs[arm], folder, device=dev, progress=False, data=data, stop_after=25)
            assert part["interrupted_at"] == 25
        out.append(run_fused(runs[arm], folder, device=dev, progress=False, data=data))
    for straight, resumed in zip(*out):
        assert straight["cuda_graph"] == (modes[0] == "on") and resumed["cuda_graph"] == (modes[1] == "on")
        assert resumed["graph_captures"] >= 2 if modes[1] == "on" else True
        assert resumed["precision"] == "fp32" and resumed["tf32"] is False  # full fp32 convolutions, as the paper
        for k in ("train_loss", "test_loss"):
            for u, v in zip(straight["history"][k], resumed["history"][k]):
                assert abs(u - v) < 1e-3 * max(1, abs(u)), (k, straight["history"][k], resumed["history"][k])
    for ra, rb in zip(*runs):  # each arm's own run folders (a run's slug names its cuda_graph setting)
        _weights_close(load_model(tmp_path / f"0_{modes[0]}" / ra.slug),
                       load_model(tmp_path / f"1_{modes[1]}" / rb.slug), 1e-3)


@needs_cuda
def test_fused_job_on_the_gpu_graphed_and_resumed_matches_eager(tmp_path):
    """The campaign's fused jobs as they run on a GPU: the step replayed from a CUDA graph, stopped mid-run
    and resumed, against the same job trained eagerly in one go."""
    _fused_job_two_ways(tmp_path, torch.device("cuda"), ("off", "on"))


def test_fused_job_check_runs_on_a_cpu(tmp_path):
    """The same check, eager both ways on a CPU: the GPU test's own code (folders, reloads) is exercised here,
    where CI runs, so that a GPU session is not lost to a bug of the test. ResNet-8 rather than 20 keeps it
    to seconds on CI's CPU; the code path is the same."""
    _fused_job_two_ways(tmp_path, torch.device("cpu"), ("off", "off"), depth=8)


def _lanes_match_runs_alone(tmp_path, dev, nets=None):
    """ResNet-20 and plain-32 (or ``nets``, name: (depth, residual)) in lanes (on a GPU each replaying its own
    CUDA graph on its own stream), a step of each in turn, all stopped after 15 rounds and resumed; against
    each run alone (fp32)."""
    from resnet_lib.engine.lanes import Lanes
    from resnet_lib.engine.loop import Trainer

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (640, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (640,), generator=g)
    nets = nets or {"resnet20": (20, True), "plain32": (32, False)}

    def trainer(name, folder):
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        train = TensorLoader(x, y, 64, augment=True, shuffle=True, drop_last=True, device=dev)
        test = TensorLoader(x[:128], y[:128], 64, device=dev)
        cfg = dataclasses.replace(TrainConfig(batch_size=64, precision="fp32").with_iters(40), eval_every=10)
        torch.manual_seed(0)
        t = Trainer(cifar_resnet(nets[name][0], residual=nets[name][1]), train, test, cfg, run_dir=folder / name,
                    device=dev, progress=False)
        t.resume()
        return t

    alone = {}
    for name in nets:
        t = trainer(name, tmp_path / "alone")
        t.train()
        alone[name] = (t.finish(), t.model)
    lanes, together = Lanes(dev), {}
    for name in nets:
        lanes.add(name, trainer(name, tmp_path / "lanes"))
    for _ in range(15):
        assert not lanes.advance()
    assert sorted(lane.trainer.state.iteration for lane in lanes.stop_all()) == [15, 15]
    for name in nets:  # resumed from the checkpoints the stop wrote
        lanes.add(name, trainer(name, tmp_path / "lanes"))
    assert [lane.trainer.state.iteration for lane in lanes.live] == [15, 15]
    while lanes.live:
        for lane in lanes.advance():
            together[lane.key] = (lanes.finish(lane), lane.trainer.model)
    for name in nets:
        (ra, ma), (rb, mb) = alone[name], together[name]
        assert ra["cuda_graph"] == rb["cuda_graph"] == (dev.type == "cuda")
        for k in ("train_loss", "test_loss"):
            for u, v in zip(ra["history"][k], rb["history"][k]):
                assert abs(u - v) < 1e-3 * max(1, abs(u)), (name, k, ra["history"][k], rb["history"][k])
        _weights_close(ma, mb, 1e-3)


@needs_cuda
def test_runs_in_lanes_on_streams_stopped_and_resumed_match_runs_alone(tmp_path):
    _lanes_match_runs_alone(tmp_path, torch.device("cuda"))


def test_lanes_check_runs_on_a_cpu(tmp_path):
    """The lanes check's own code on a CPU (no streams, no graphs), where CI runs; smaller nets than on the
    GPU keep it to seconds there."""
    _lanes_match_runs_alone(tmp_path, torch.device("cpu"), {"resnet8": (8, True), "plain14": (14, False)})


CHECKS = [  # plain-script mode: (what it prints when it passes, the check, whether it takes a folder)
    ("graph step == eager step: ok", test_graph_step_equals_eager_step_across_lr_changes, False),
    ("fit with graph == fit without: ok", test_fit_with_graph_matches_fit_without, True),
    *[(f"graph step == eager step, {p}, ResNet-{d}, channels-last: ok",
       lambda p=p, d=d: test_graph_step_equals_eager_step_in_every_policy(p, d), False)
      for p in GPU_POLICIES for d in (20, 56)],
    *[(f"fit with graph == fit without, {p}, ResNet-{d}, channels-last: ok",
       lambda t, p=p, d=d: test_fit_with_graph_matches_fit_without_in_every_policy(t, p, d), True)
      for p in GPU_POLICIES for d in (20, 56)],
    ("fused graph step == fused eager step: ok", test_fused_graph_step_equals_fused_eager_step, False),
    ("fused job graphed and resumed == fused job eager: ok",
     test_fused_job_on_the_gpu_graphed_and_resumed_matches_eager, True),
    ("runs in lanes (streams), stopped and resumed == runs alone: ok",
     test_runs_in_lanes_on_streams_stopped_and_resumed_match_runs_alone, True),
]


if __name__ == "__main__":  # plain-script mode for the GPU machine: every check runs, a failure does not hide the rest
    import tempfile
    import traceback
    from pathlib import Path
    test_graph_setting_is_checked_before_training()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU here")
    failed = []
    for ok, check, takes_folder in CHECKS:
        try:
            if takes_folder:
                with tempfile.TemporaryDirectory() as d:
                    check(Path(d))
            else:
                check()
            print(ok, flush=True)
        except Exception:
            traceback.print_exc(file=sys.stdout)
            print(f"FAILED: {check.__name__}", flush=True)
            failed.append(check.__name__)
    sys.exit(f"{len(failed)} of {len(CHECKS)} CUDA checks failed: {', '.join(failed)}" if failed else 0)
