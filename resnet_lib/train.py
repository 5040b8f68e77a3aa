"""The training engine: the paper's SGD recipe, counted in iterations, resumable, and torchrun-ready.

``fit`` trains any model on any *batch source*: an object with ``batch_size`` (the global batch),
``__len__`` (batches per epoch) and ``batches(epoch, start=0, rank=0, world=1)``, which yields this
rank's share of each global batch of ``epoch`` from batch ``start`` on, deterministically. That
contract is what makes a resumed run end exactly where an uninterrupted one does: the checkpoint
records (iteration, epoch, batch) and the source regenerates the rest of the epoch.

Under torchrun (RANK / WORLD_SIZE / LOCAL_RANK set), ``fit`` wraps the model in
DistributedDataParallel, each rank takes its slice of every global batch, and only rank 0 shows
progress and writes checkpoints and results.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .device import autocast, pick_device, use_bf16
from .io import atomic_torch_save, atomic_write_json, provenance


class TrainingDiverged(RuntimeError):
    pass


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe; defaults are Section 4.2's CIFAR-10 recipe."""
    batch_size: int = 128              # images per iteration, all ranks together (Section 4.2)
    lr: float = 0.1                    # starting learning rate
    momentum: float = 0.9
    weight_decay: float = 1e-4         # on every parameter, BN's too, as in the authors' Torch code
    iters: int = 64_000                # "terminate training at 64k iterations"
    milestones: tuple[int, ...] = (32_000, 48_000)  # lr divided by 10 at each
    warmup: bool = False               # ResNet-110: lr 0.01 "until the training error is below 80%"
    warmup_lr: float = 0.01
    warmup_until_err: float = 0.80     # fraction, training error over the last `warmup_window` iterations
    warmup_window: int = 50
    eval_every: int = 2_000            # iterations between test-set evaluations
    checkpoint_every: int = 2_000      # iterations between checkpoints (0: only at the end)
    seed: int = 0                      # model init and data order
    amp: str = "auto"                  # "auto": bf16 autocast where the device has fast bf16; "bf16"; "off"
    channels_last: str = "auto"        # "auto": with bf16; "on"; "off"
    diverge_loss: float = 100.0        # a training loss above this (or NaN) stops the run
    cuda_graph: str = "auto"           # "auto": capture the whole SGD step in a CUDA graph on one GPU; "on"; "off"

    def __post_init__(self):
        problems = []
        if not isinstance(self.iters, int) or self.iters <= 0:
            problems.append(f"iters must be a positive number of iterations, got {self.iters!r}")
        if self.batch_size <= 0:
            problems.append(f"batch_size must be positive, got {self.batch_size}")
        if self.lr <= 0:
            problems.append(f"lr must be positive, got {self.lr}")
        if any(m <= 0 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            problems.append(f"milestones must be increasing positive iterations, got {self.milestones}")
        if self.eval_every <= 0:
            problems.append(f"eval_every must be positive, got {self.eval_every}")
        if self.amp not in ("auto", "bf16", "off"):
            problems.append(f"amp must be 'auto', 'bf16' or 'off', got {self.amp!r}")
        if self.cuda_graph not in ("auto", "on", "off"):
            problems.append(f"cuda_graph must be 'auto', 'on' or 'off', got {self.cuda_graph!r}")
        if self.channels_last not in ("auto", "on", "off"):
            problems.append(f"channels_last must be 'auto', 'on' or 'off', got {self.channels_last!r}")
        if problems:
            raise ValueError("bad TrainConfig: " + "; ".join(problems))

    def scaled(self, factor: float) -> "TrainConfig":
        """The same schedule shape over ``factor`` times as many iterations (e.g. 0.01 for a quick run)."""
        if factor <= 0:
            raise ValueError(f"scale factor must be positive, got {factor}")
        return self.with_iters(max(1, round(self.iters * factor)))

    def with_iters(self, iters: int) -> "TrainConfig":
        """Stretch or shrink the schedule to ``iters`` iterations, keeping where the lr drops (50%, 75%)."""
        if not isinstance(iters, int) or iters <= 0:
            raise ValueError(f"iters must be a positive integer, got {iters!r}")
        f = iters / self.iters
        sc = lambda v: max(1, round(v * f))
        return dataclasses.replace(self, iters=iters, milestones=tuple(sc(m) for m in self.milestones),
                                   eval_every=min(sc(self.eval_every), iters),
                                   checkpoint_every=sc(self.checkpoint_every) if self.checkpoint_every else 0)


def epochs_to_iters(epochs: float, num_examples: int, batch_size: int = 128) -> int:
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    return max(1, round(epochs * (num_examples // batch_size)))


# --------------------------------------------------------------------------------- schedules

class StepSchedule:
    """lr divided by 10 at each milestone (Section 4.2), with the optional ResNet-110 warm-up:
    ``warmup_lr`` until the recent training error falls below ``warmup_until_err``."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.warming = cfg.warmup
        self.warmup_ended_at = None

    def lr_at(self, iteration: int) -> float:
        if self.warming:
            return self.cfg.warmup_lr
        return self.cfg.lr * 0.1 ** sum(iteration >= m for m in self.cfg.milestones)

    def observe(self, iteration: int, train_err: float | None = None, test_err: float | None = None) -> None:
        if self.warming and train_err is not None and train_err < self.cfg.warmup_until_err:
            self.warming, self.warmup_ended_at = False, iteration

    def state_dict(self) -> dict:
        return {"warming": self.warming, "warmup_ended_at": self.warmup_ended_at}

    def load_state_dict(self, state: dict) -> None:
        self.warming, self.warmup_ended_at = state["warming"], state["warmup_ended_at"]


# --------------------------------------------------------------------------------- distribution

@dataclass
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistEnv":
        """torchrun's variables; a process group is started when there is more than one process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        env = cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
        if world > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        return env


# --------------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model: nn.Module, source, device="auto", amp: str | bool = "auto") -> dict:
    """Mean cross-entropy and top-1 error of ``model`` over every batch of ``source``."""
    dev = pick_device(device)
    was_training = model.training
    model.eval()
    total_loss, wrong, n = 0.0, 0, 0
    with autocast(dev, use_bf16(dev, amp)):
        for x, y in source.batches(0):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            out = model(x).float()
            total_loss += F.cross_entropy(out, y, reduction="sum").item()
            wrong += (out.argmax(1) != y).sum().item()
            n += len(y)
    model.train(was_training)
    return {"loss": total_loss / n, "err": wrong / n}


# --------------------------------------------------------------------------------- fit

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"


def _resolve_formats(dev: torch.device, cfg: TrainConfig) -> tuple[bool, bool]:
    bf16 = use_bf16(dev, cfg.amp)
    cl = {"on": True, "off": False}.get(cfg.channels_last, bf16)
    return bf16, cl


# settings that change how a run executes, not what it computes: a run may resume with others
EXECUTION_ONLY = ("eval_every", "checkpoint_every", "cuda_graph")


def _check_checkpoint(ckpt: dict, path: Path, spec: dict | None, cfg: TrainConfig) -> None:
    if spec is not None and ckpt.get("spec") not in (None, spec):
        raise ValueError(f"the checkpoint {path} was written for the architecture {ckpt['spec']}, but this run "
                         f"builds {spec}. Use another run folder for this architecture, or delete the old one.")
    old = ckpt.get("config", {})
    same = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in EXECUTION_ONLY}
    diff = {k: (old.get(k), v) for k, v in same.items() if k in old and _norm(old[k]) != _norm(v)}
    if diff:
        raise ValueError(f"the checkpoint {path} was trained with a different recipe ({diff}: checkpoint vs now). "
                         "Resume with the same settings, or use another run folder.")


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def _sgd_step(net: nn.Module, opt: torch.optim.Optimizer, x, y, dev: torch.device, bf16: bool,
              cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward and SGD update on a batch whose gradients were cleared; returns the mean loss
    and the misclassified count as tensors on the device (nothing waits for the GPU)."""
    with autocast(dev, bf16, cache):
        out = net(x)
        loss = F.cross_entropy(out.float(), y)
    loss.backward()
    opt.step()
    return loss.detach(), (out.argmax(1) != y).sum()


def train_step(net: nn.Module, opt: torch.optim.Optimizer, x, y, dev: torch.device, bf16: bool) -> tuple[float, int]:
    """One SGD step on a batch; returns (mean loss, misclassified count)."""
    x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
    opt.zero_grad(set_to_none=True)
    loss, wrong = _sgd_step(net, opt, x, y, dev, bf16)
    return loss.item(), wrong.item()


class CudaGraphStep:
    """The whole SGD step (forward, backward, update) captured once in a CUDA graph and replayed.

    A CIFAR ResNet-20 step is hundreds of small kernels; launched one by one from Python, the GPU
    mostly waits for the CPU. Replaying the captured graph launches them all at once. The numbers are
    the eager step's: the same ``torch.optim.SGD`` runs inside the capture. The learning rate is a
    Python number baked into the captured update, so the step is captured again whenever it changes
    (three times in the paper's schedule). The first ``eager_steps`` iterations of each ``fit`` call
    run eagerly on a side stream, as CUDA graph capture requires (they create the momentum buffers
    and let cuDNN choose its kernels); they are ordinary training iterations.
    """

    def __init__(self, net: nn.Module, opt: torch.optim.Optimizer, dev: torch.device, bf16: bool,
                 eager_steps: int = 3):
        self.net, self.opt, self.dev, self.bf16 = net, opt, dev, bf16
        self.eager_left = eager_steps
        self.graph = self.lr = None
        self.captures = 0

    def _eager(self, x, y):
        side = torch.cuda.Stream(self.dev)
        side.wait_stream(torch.cuda.current_stream(self.dev))
        with torch.cuda.stream(side):
            self.opt.zero_grad(set_to_none=True)
            out = _sgd_step(self.net, self.opt, x, y, self.dev, self.bf16)
        torch.cuda.current_stream(self.dev).wait_stream(side)
        return out

    def _capture(self, x, y, lr):
        self.graph = None
        self.x, self.y = torch.empty_like(x), torch.empty_like(y)
        self.opt.zero_grad(set_to_none=True)  # the gradients are then allocated, and overwritten, by the graph
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.loss, self.wrong = _sgd_step(self.net, self.opt, self.x, self.y, self.dev, self.bf16, cache=False)
        self.graph, self.lr = graph, lr
        self.captures += 1

    def __call__(self, x, y):
        if self.eager_left > 0:
            self.eager_left -= 1
            return self._eager(x, y)
        if self.graph is not None and (x.shape != self.x.shape or y.shape != self.y.shape):
            self.opt.zero_grad(set_to_none=True)  # an odd-sized batch: one eager step (the graph keeps its own buffers)
            return _sgd_step(self.net, self.opt, x, y, self.dev, self.bf16)
        lr = self.opt.param_groups[0]["lr"]
        if self.graph is None or lr != self.lr:
            self._capture(x, y, lr)
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.loss, self.wrong  # overwritten by the next replay: read (or copy) them before it


def use_cuda_graph(dev: torch.device, cfg: TrainConfig, world: int) -> bool:
    """Whether ``fit`` replays its step from a CUDA graph: on one GPU unless ``cfg.cuda_graph`` is "off".
    Under DDP the eager step stays (its gradient hooks would need more care under capture)."""
    if cfg.cuda_graph == "on" and dev.type != "cuda":
        raise ValueError(f"cuda_graph='on' needs a CUDA device, but this run is on {dev}; use 'auto' or 'off'")
    if cfg.cuda_graph == "on" and world > 1:
        raise ValueError("cuda_graph='on' is not supported with several processes (DDP); use 'auto' or 'off'")
    return cfg.cuda_graph != "off" and dev.type == "cuda" and world == 1


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def fit(model: nn.Module, train_source, eval_source, cfg: TrainConfig = TrainConfig(), *,
        run_dir: str | os.PathLike | None = None, schedule=None, device="auto", progress: bool = True,
        spec: dict | None = None, resume: bool = True, stop_after: int | None = None, desc: str = "train",
        final_source=None) -> dict:
    """Train ``model`` with SGD by ``cfg``; evaluate on ``eval_source`` every ``cfg.eval_every`` iterations.

    With ``run_dir``, checkpoints go to ``run_dir/checkpoint.pt`` (atomically) and the result to
    ``run_dir/result.json``; an existing checkpoint is resumed. ``spec`` (a JSON-able description of
    the architecture) is stored with both and checked on resume. ``stop_after`` ends the call early at
    that iteration with a checkpoint, as an interruption would. ``final_source`` (default
    ``eval_source``) is evaluated once at the end for the final numbers, so the curve points may use a
    cheaper subset. Returns the result dict.
    """
    dev = pick_device(device)
    env = DistEnv.from_env()
    if env.world > 1 and dev.type == "cuda" and dev.index is None:  # one GPU per process under torchrun
        dev = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(dev)
    bf16, cl = _resolve_formats(dev, cfg)
    if train_source.batch_size != cfg.batch_size:
        raise ValueError(f"the training source makes batches of {train_source.batch_size}, the config asks for "
                         f"{cfg.batch_size}; build the source with batch_size={cfg.batch_size}")
    if len(train_source) == 0:
        raise ValueError("the training source yields no full batch: it has fewer examples than one batch")
    run_dir = Path(run_dir) if run_dir else None
    model.to(dev, memory_format=torch.channels_last if cl else torch.contiguous_format)
    opt = make_optimizer(model, cfg)
    schedule = schedule or StepSchedule(cfg)
    st = {"iteration": 0, "epoch": 0, "batch": 0, "wall": 0.0, "window": [0.0, 0, 0, 0], "warm": [0, 0],
          "history": {"iteration": [], "lr": [], "train_loss": [], "train_err": [], "test_loss": [], "test_err": []}}

    ckpt_path = run_dir / CHECKPOINT if run_dir else None
    if ckpt_path and ckpt_path.exists() and resume:
        ckpt = torch.load(ckpt_path, map_location=dev, weights_only=False)
        _check_checkpoint(ckpt, ckpt_path, spec, cfg)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        st = ckpt["state"]
    if st["iteration"] >= cfg.iters and run_dir and (run_dir / RESULT).exists():
        return json.loads((run_dir / RESULT).read_text())

    net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None) \
        if env.world > 1 else model
    # window: loss sum, wrong, seen, iterations since the last evaluation; warm: wrong, seen for the warm-up
    hist, win, warm_win = st["history"], st["window"], st["warm"]
    graphed = use_cuda_graph(dev, cfg, env.world)
    step = CudaGraphStep(net, opt, dev, bf16) if graphed else None
    # (iteration, lr, batch, [loss, wrong]) of steps not yet read back: on a GPU they are read every
    # `sync_every` iterations (and before every evaluation and checkpoint), so the CPU runs ahead of the
    # GPU instead of waiting for each step. It divides warmup_window: each warm-up check sees every step.
    sync_every = cfg.warmup_window if dev.type == "cuda" else 1
    pending: list = []

    def drain():
        if not pending:
            return
        values = torch.stack([p[3] for p in pending]).tolist()
        for (it_, lr_, n, _), (loss_v, wrong) in zip(pending, values):
            if not math.isfinite(loss_v) or loss_v > cfg.diverge_loss:
                checkpoint_note = f" The last good checkpoint is {ckpt_path}." if ckpt_path and ckpt_path.exists() else ""
                raise TrainingDiverged(
                    f"training diverged at iteration {it_} (loss {loss_v:.4g}, lr {lr_:g}). Lower the learning rate, "
                    f"or use the warm-up the paper uses for ResNet-110 (warmup=True: lr {cfg.warmup_lr} until "
                    f"training error < {cfg.warmup_until_err:.0%}).{checkpoint_note}")
            wrong = int(wrong)
            win[0] += loss_v * n
            win[1] += wrong
            win[2] += n
            win[3] += 1
            warm_win[0] += wrong
            warm_win[1] += n
        pending.clear()

    def checkpoint():
        if ckpt_path and env.main:
            atomic_torch_save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                          "schedule": schedule.state_dict(), "state": st, "spec": spec,
                                          "config": dataclasses.asdict(cfg)})

    bar = tqdm(total=cfg.iters, initial=st["iteration"], desc=desc, disable=not (progress and env.main),
               dynamic_ncols=True, leave=True)
    t_start = time.perf_counter() - st["wall"]
    net.train()
    while st["iteration"] < cfg.iters:
        for x, y in train_source.batches(st["epoch"], start=st["batch"], rank=env.rank, world=env.world):
            it = st["iteration"]
            lr = schedule.lr_at(it)
            for g in opt.param_groups:
                g["lr"] = lr
            if step is not None:
                loss_t, wrong_t = step(x, y)
            else:
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                opt.zero_grad(set_to_none=True)
                loss_t, wrong_t = _sgd_step(net, opt, x, y, dev, bf16)
            pending.append((it, lr, len(y), torch.stack((loss_t.float(), wrong_t.float()))))
            st["iteration"] = it = it + 1
            st["batch"] += 1
            must_eval = it % cfg.eval_every == 0 or it == cfg.iters
            must_save = it == cfg.iters or (cfg.checkpoint_every and it % cfg.checkpoint_every == 0)
            at_stop = stop_after is not None and it >= stop_after
            if it % sync_every == 0 or must_eval or must_save or at_stop:
                drain()
            if warm_win[1] and it % cfg.warmup_window == 0:
                schedule.observe(it, train_err=warm_win[0] / warm_win[1])
                warm_win[:] = [0, 0]
            bar.update(1)
            if must_eval:
                ev = evaluate(model, eval_source, dev, bf16)
                schedule.observe(it, test_err=ev["err"])
                for k, v in (("iteration", it), ("lr", lr), ("train_loss", win[0] / win[2]),
                             ("train_err", win[1] / win[2]), ("test_loss", ev["loss"]), ("test_err", ev["err"])):
                    hist[k].append(v)
                win[:] = [0.0, 0, 0, 0]
                bar.set_postfix(train_err=f"{hist['train_err'][-1]:.3f}", test_err=f"{ev['err']:.3f}", lr=f"{lr:g}")
            st["wall"] = time.perf_counter() - t_start
            if must_save:
                checkpoint()
            if it >= cfg.iters or at_stop:
                break
        else:
            st["epoch"] += 1
            st["batch"] = 0
            continue
        if stop_after is not None and st["iteration"] >= stop_after and st["iteration"] < cfg.iters:
            checkpoint()
            bar.close()
            return {"interrupted_at": st["iteration"], "history": hist}
    bar.close()

    images = cfg.iters * cfg.batch_size
    final = evaluate(model, final_source, dev, bf16) if final_source is not None else \
        {"err": hist["test_err"][-1], "loss": hist["test_loss"][-1]}
    result = {"spec": spec, "config": dataclasses.asdict(cfg), "history": hist,
              "final": {"train_err": hist["train_err"][-1], "test_err": final["err"], "test_loss": final["loss"]},
              "wall_s": round(st["wall"], 2), "img_per_s": round(images / max(st["wall"], 1e-9), 1),
              "warmup_ended_at": getattr(schedule, "warmup_ended_at", None),
              "precision": "bf16 autocast" if bf16 else "fp32", "channels_last": cl, "world_size": env.world,
              "cuda_graph": graphed, "graph_captures": step.captures if step else 0,
              "provenance": provenance(dev)}
    if run_dir and env.main:
        atomic_write_json(run_dir / RESULT, result)
    return result


# --------------------------------------------------------------------------------- CIFAR runs

@dataclass(frozen=True)
class CifarRun:
    """One CIFAR-10 experiment of Section 4.2: a net, its data, its recipe."""
    depth: int = 20
    residual: bool = True
    shortcut: str = "A"
    train: TrainConfig = field(default_factory=TrainConfig)
    subset: int = 0                    # 0: all 50k training images; else a stratified subset
    val_split: bool = False            # True: 45k train / 5k validation, as the paper chose its schedule
    normalize: str = "pixel_mean"      # Section 4.2; "channel" for mean/std per channel
    test_subset: int = 0               # >0: curve points on a stratified subset of the test set; final on all

    def __post_init__(self):
        from .cifar_data import NORMALIZATIONS
        from .cifar_models import CifarNetSpec
        CifarNetSpec(self.depth, self.residual, self.shortcut)  # validates depth and option early
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown normalisation {self.normalize!r}; use 'pixel_mean' or 'channel'")
        limit = 45_000 if self.val_split else 50_000
        if not (0 <= self.subset <= limit):
            raise ValueError(f"subset {self.subset} is outside 0..{limit} (the training images available); "
                             f"use 0 for all of them")
        if not (0 <= self.test_subset <= (5_000 if self.val_split else 10_000)):
            raise ValueError(f"test_subset {self.test_subset} is outside 0..10000 (5000 with val_split); "
                             "use 0 to evaluate on every test image")

    @property
    def name(self) -> str:
        from .cifar_models import CifarNetSpec
        return CifarNetSpec(self.depth, self.residual, self.shortcut).name

    @property
    def slug(self) -> str:
        t = self.train
        return (f"{'resnet' if self.residual else 'plain'}{self.depth}{self.shortcut if self.residual else ''}"
                f"_it{t.iters}_lr{t.lr:g}_b{t.batch_size}_n{self.subset or 'all'}{'_val' if self.val_split else ''}"
                f"_{self.normalize}_s{t.seed}" + (f"_t{self.test_subset}" if self.test_subset else ""))


def paper_recipe(depth: int) -> TrainConfig:
    """Section 4.2's recipe for ``depth``: the warm-up is on for 110 layers and deeper."""
    return TrainConfig(warmup=depth >= 110)


def run_cifar(run: CifarRun, root: str | os.PathLike | None = None, device="auto", progress: bool = True,
              data=None, force: bool = False, stop_after: int | None = None) -> dict:
    """Train one CIFAR net; stored under ``root/<run.slug>/``. An existing finished run is returned
    as it is (no retraining) unless ``force``; an unfinished one resumes."""
    from .cifar_data import load_cifar10, make_loaders
    from .cifar_models import cifar_resnet
    from .paths import output_dir
    run_dir = Path(root) if root else output_dir() / "runs"
    run_dir = run_dir / run.slug
    if force and run_dir.exists():
        for f in (CHECKPOINT, RESULT):
            (run_dir / f).unlink(missing_ok=True)
    if (run_dir / RESULT).exists():
        return json.loads((run_dir / RESULT).read_text())
    dev = pick_device(device)
    bf16, cl = _resolve_formats(dev, run.train)
    data = data or load_cifar10()
    train_src, test_src = make_loaders(data, batch_size=run.train.batch_size, subset=run.subset,
                                       val_split=run.val_split, normalize=run.normalize, seed=run.train.seed,
                                       device=dev, channels_last=cl)
    curve_src = test_src
    if run.test_subset and run.test_subset < test_src.num_examples:
        from .cifar_data import TensorLoader, stratified_indices
        keep = stratified_indices(test_src.y.cpu(), run.test_subset, seed=0).to(test_src.device)
        curve_src = TensorLoader(test_src.x[keep], test_src.y[keep], test_src.batch_size, mean=test_src.mean,
                                 std=test_src.std, device=dev, channels_last=cl)
    torch.manual_seed(run.train.seed)
    model = cifar_resnet(run.depth, run.shortcut, run.residual)
    spec = {"kind": "cifar", "depth": run.depth, "residual": run.residual, "shortcut": run.shortcut,
            "num_classes": 10}
    res = fit(model, train_src, curve_src, run.train, run_dir=run_dir, device=dev, progress=progress, spec=spec,
              stop_after=stop_after, desc=run.name, final_source=test_src if curve_src is not test_src else None)
    if "final" in res:
        res.update(name=run.name, run={k: v for k, v in dataclasses.asdict(run).items() if k != "train"},
                   train_examples=train_src.num_examples, eval_set="val5k" if run.val_split else "test10k")
        atomic_write_json(run_dir / RESULT, res)
    return res


def list_runs(root: str | os.PathLike) -> list[dict]:
    """Every finished run under ``root`` (each result gets its folder as ``run_dir``)."""
    out = []
    for p in sorted(Path(root).glob(f"*/{RESULT}")):
        r = json.loads(p.read_text())
        r["run_dir"] = str(p.parent)
        out.append(r)
    return out


def build_model(spec: dict) -> nn.Module:
    spec = dict(spec)
    kind = spec.pop("kind", "cifar")
    if kind == "cifar":
        from .cifar_models import cifar_resnet
        return cifar_resnet(spec["depth"], spec.get("shortcut", "A"), spec.get("residual", True),
                            spec.get("num_classes", 10))
    if kind == "imagenet":
        from .imagenet_models import imagenet_resnet
        return imagenet_resnet(**spec)
    raise ValueError(f"unknown model kind {kind!r} in the checkpoint's spec; known: 'cifar', 'imagenet'")


def load_model(run_dir: str | os.PathLike, device="cpu") -> nn.Module:
    """The trained model of a run folder, in eval mode."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint in {run_dir}; train the run first")
    ckpt = torch.load(path, map_location=device, weights_only=False)
    if ckpt.get("spec") is None:
        raise ValueError(f"{path} has no architecture spec; it cannot be rebuilt")
    model = build_model(ckpt["spec"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise ValueError(f"{path} does not match the architecture {ckpt['spec']}: {str(e).splitlines()[0]}") from e
    return model.to(device).eval()


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m resnet_lib train",
                                 description="Train a CIFAR-10 net of Section 4.2 (defaults: the paper's full recipe).")
    ap.add_argument("--depth", type=int, default=20, help="6n+2: 20, 32, 44, 56, 110, 1202")
    ap.add_argument("--plain", action="store_true", help="no shortcuts (the paper's plain net)")
    ap.add_argument("--shortcut", default="A", choices=["A", "B", "C"])
    ap.add_argument("--iters", type=int, default=None, help="iterations (default 64000); lr drops at 50%% and 75%%")
    ap.add_argument("--scale", type=float, default=None, help="scale the 64k schedule by this factor")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--subset", type=int, default=0, help="stratified training subset (0: all)")
    ap.add_argument("--val-split", action="store_true", help="45k/5k train/val split (Section 4.2)")
    ap.add_argument("--normalize", default="pixel_mean", choices=["pixel_mean", "channel"])
    ap.add_argument("--eval-every", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="runs folder (default: outputs/runs)")
    ap.add_argument("--force", action="store_true", help="retrain even if the run is stored")
    a = ap.parse_args(argv)
    cfg = dataclasses.replace(paper_recipe(a.depth), lr=a.lr, batch_size=a.batch_size, seed=a.seed, amp=a.amp)
    if a.iters is not None and a.scale is not None:
        ap.error("give --iters or --scale, not both")
    if a.iters is not None:
        cfg = cfg.with_iters(a.iters)
    elif a.scale is not None:
        cfg = cfg.scaled(a.scale)
    if a.eval_every:
        cfg = dataclasses.replace(cfg, eval_every=a.eval_every)
    run = CifarRun(a.depth, not a.plain, a.shortcut, cfg, a.subset, a.val_split, a.normalize)
    res = run_cifar(run, a.out, a.device, force=a.force)
    print(json.dumps({"name": res["name"], **res["final"], "wall_s": res["wall_s"], "img_per_s": res["img_per_s"]}))
    return 0
