"""``train-imagenet`` under torchrun: two gloo processes on the CPU against one process on the same
global batch.

Batch norm makes "the same" need care. DDP averages gradients, but each rank normalises its own half of
the batch with that half's statistics (as the paper's own multi-GPU Caffe training did; SyncBatchNorm
would pool them, but it runs on GPUs only). So the reference is one process that takes the same global
batch, normalises each rank's half separately (the images at positions r, r + 2, ... for rank r) and
averages the two losses: mathematically the same update. The reference runs on one thread, as each
rank does (OMP_NUM_THREADS=1): oneDNN's convolutions sum in an order that depends on the thread count,
and on an AVX2 CPU that alone moved conv1's weights 10x the tolerance in 3 steps (CI, 2026-11-28).
What is left is floating-point summation order (an all-reduce sums the two gradients, autograd
accumulates them), about 1e-7 relative per step (on that CPU, none: bitwise equal); after 3 SGD steps we allow
|diff| <= 1e-5 + 1e-4 |w|. A single process that normalises the whole batch at once is a different
computation, and the test checks that it is further away than that tolerance by a wide margin, so the
tolerance is tight enough to tell.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from resnet_lib.data.imagenet import TINY_AUG
from resnet_lib.experiments.imagenet_train import cli, tiny_imagenet_data
from resnet_lib.models.imagenet import ImageNetSpec, from_spec

ITERS, BATCH, LR, SEED = 3, 8, 0.02, 0
ATOL, RTOL = 1e-5, 1e-4


def _fake_tiny_imagenet(root: Path, classes=("n0001", "n0002"), train=8, val=2) -> Path:
    """Tiny ImageNet's standard layout with random 64x64 images (no data download in CI)."""
    g = torch.Generator().manual_seed(0)
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(classes) + "\n")
    ann = []
    for c, wnid in enumerate(classes):
        (root / "train" / wnid / "images").mkdir(parents=True)
        for i in range(train + val):
            img = torch.randint(0, 256, (64, 64, 3), dtype=torch.uint8, generator=g) // 2 + 60 * c
            if i < train:
                Image.fromarray(img.numpy()).save(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", "PNG")
            else:
                name = f"val_{c * val + i - train}.JPEG"
                Image.fromarray(img.numpy()).save(root / "val" / "images" / name, "PNG")
                ann.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    return root


def _args(data: Path, out: Path) -> list[str]:
    return ["--data", str(data), "--depth", "18", "--iters", str(ITERS), "--batch-size", str(BATCH),
            "--lr", str(LR), "--seed", str(SEED), "--precision", "fp32", "--device", "cpu", "--out", str(out), "--no-test"]


def _reference(data_root: Path, groups: int) -> dict[str, torch.Tensor]:
    """One process, the same global batches, batch norm over ``groups`` interleaved parts of each; on one
    thread, like each rank."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _reference_steps(data_root, groups)
    finally:
        torch.set_num_threads(threads)


def _reference_steps(data_root: Path, groups: int) -> dict[str, torch.Tensor]:
    data = tiny_imagenet_data(data_root, batch_size=BATCH, aug=TINY_AUG, seed=SEED, channels_last=False,
                              progress=False)
    torch.manual_seed(SEED)
    model = from_spec(ImageNetSpec(18, num_classes=len(data.classes))).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=1e-4)
    batches = (b for epoch in range(ITERS) for b in data.train.batches(epoch))  # across epoch ends, as fit
    for x, y in islice(batches, ITERS):
        loss = sum(F.cross_entropy(model(x[r::groups]), y[r::groups]) for r in range(groups)) / groups
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in model.named_parameters()}


def _params(run_dir: Path, names) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    return {k: state[k] for k in names}


def _max_excess(a: dict, b: dict) -> float:
    """max over parameters of |a - b| / (ATOL + RTOL |b|): <= 1 means within tolerance."""
    return max(((a[k] - b[k]).abs() / (ATOL + RTOL * b[k].abs())).max().item() for k in b)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_on_the_same_global_batch(tmp_path):
    data = _fake_tiny_imagenet(tmp_path / "tiny")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "resnet_lib.experiments.imagenet_train", *_args(data, tmp_path / "ddp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # rank 0 alone reports and writes
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and lines[0]["world_size"] == 2
    result = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert result["world_size"] == 2 and result["config"]["batch_size"] == BATCH  # global batch kept

    ghost = _reference(data, groups=2)
    ddp = _params(tmp_path / "ddp", ghost)
    print(f"2 ranks vs 1 process: max |diff| / tolerance = {_max_excess(ddp, ghost):.3g}")
    assert _max_excess(ddp, ghost) <= 1.0

    # the same command in one process: batch norm over all 8 images, a measurably different run
    assert cli(_args(data, tmp_path / "one")) == 0
    one = _params(tmp_path / "one", ghost)
    whole = _reference(data, groups=1)
    assert _max_excess(one, whole) <= 1.0
    print(f"2 ranks vs whole-batch BN: max |diff| / tolerance = {_max_excess(ddp, one):.3g}")
    assert _max_excess(ddp, one) > 100.0


# ------------------------------------------------------------------------------ the ImageNet schedule

def test_recipe_defaults_are_section_3_4():
    from resnet_lib.experiments.imagenet_train import ImageNetRecipe
    r = ImageNetRecipe()
    assert (r.train.batch_size, r.train.lr, r.train.momentum, r.train.weight_decay, r.train.iters) == \
        (256, 0.1, 0.9, 1e-4, 600_000)
    assert r.train.milestones == () and r.plateau.factor == 0.1
    assert r.aug.short_side == (256, 480) and r.aug.crop == 224


@pytest.mark.parametrize("patience,threshold,cooldown", [(0, 0.0, 0), (2, 0.01, 0), (3, 0.05, 2)])
def test_plateau_schedule_drops_like_reduce_lr_on_plateau(patience, threshold, cooldown):
    from resnet_lib.experiments.imagenet_train import PlateauConfig, PlateauSchedule
    cfg = PlateauConfig(patience=patience, threshold=threshold, cooldown=cooldown, min_lr=1e-4)
    ours = PlateauSchedule(0.1, cfg)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    torch_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=patience,
                                                             threshold=threshold, threshold_mode="rel",
                                                             cooldown=cooldown, min_lr=1e-4)
    g = torch.Generator().manual_seed(patience)
    err = 0.9
    for step in range(1, 60):  # a noisy error that falls, then plateaus
        err = max(0.2, err - 0.03) + 0.02 * torch.rand((), generator=g).item()
        ours.observe(step * 100, test_err=err)
        ours.observe(step * 100, train_err=0.0)  # ignored: the validation error is monitored
        torch_sched.step(err)
        assert ours.lr_at(step * 100) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
    assert len(ours.drops) == 3  # 0.1 -> 0.01 -> 0.001 -> 0.0001 = min_lr, no further
    assert ours.lr_at(0) == 0.1 and ours.lr_at(ours.drops[0] - 1) == 0.1


def test_plateau_schedule_resumes_from_its_state():
    from resnet_lib.experiments.imagenet_train import PlateauConfig, PlateauSchedule
    a = PlateauSchedule(0.1, PlateauConfig(patience=1))
    for it, err in enumerate([0.5, 0.4, 0.4, 0.4, 0.39, 0.39, 0.39]):
        a.observe(it, test_err=err)
    b = PlateauSchedule(0.1, PlateauConfig(patience=1))
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert [b.lr_at(i) for i in range(10)] == [a.lr_at(i) for i in range(10)] and b.drops == [3, 6]
    with pytest.raises(ValueError, match="monitor"):
        PlateauConfig(monitor="test")  # the old name: "val" or "holdout" now say which images
