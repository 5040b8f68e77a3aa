"""K seeds of one CIFAR run trained at once as one fused wide network (``models.fused``).

Each run keeps everything it would have alone: ``torch.manual_seed(seed)`` before building its net
(as ``run_cifar`` does), its own training source (data order and augmentation drawn from its seed),
its own BN statistics, and its own share of one SGD whose momentum and weight decay are elementwise.
The step's loss is the sum of the K runs' losses (``models.fused.fused_loss``), so the K runs end
where K separate ``fit`` calls end, up to floating-point summation order (a CPU test checks it).

``FusedTrainer`` is the engine's ``Trainer`` for such a group: resumable checkpoints of the fused net,
each run's own curve and result, and at the end each run's own folder, as ``run_cifar`` writes it;
``run_fused`` is ``run_cifar`` for the group (the campaign trains further seeds with it).

Runs with the ResNet-110 warm-up (lr 0.01 until the run's own training error is below 80%) cannot share
one learning rate while they warm up: each warm-up ends at its own iteration. They are fused after it
instead: each run trains alone, from curve point to curve point, until its warm-up has ended (in the
paper's recipe: to 2,000 iterations, the first curve point, long after a warm-up of about 400); those
behind then catch up with the furthest, and the fused net starts from their checkpoints there
(``start_from``), exactly where each run stands (weights, BN statistics, momentum, curve).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..base.device import autocast, pick_device
from ..base.errors import UserError
from ..base.io import atomic_write_json, ensure_writable_dir
from ..data.cifar import Cifar10, load_cifar10
from ..engine.checkpoint import (
    CHECKPOINT,
    PREVIOUS,
    RESULT,
    check_identity,
    identity_hash,
    load_checkpoint,
    read_result,
    save_checkpoint,
)
from ..engine.cuda_graph import CudaGraphStep
from ..engine.distributed import DistEnv
from ..engine.loop import RunState, Tally, Trainer, record_point, run_trainer
from ..experiments.cifar_runs import RUN_KEYS, CifarRun, cifar_trainer, run_sources
from ..models.cifar import cifar_resnet
from ..models.fused import (
    fuse,
    fuse_optimizer_states,
    fuse_states,
    fused_loss,
    split_optimizer_state,
    split_state,
    unfuse,
)


def check_fusable(runs: list[CifarRun], warmup_ok: bool = False) -> None:
    """K runs can share one fused net when only their seeds differ, and (unless ``warmup_ok``: they are
    fused after it, from checkpoints) none needs the warm-up."""
    if not runs:
        raise ValueError("no runs to fuse")
    if len({dataclasses.replace(r, train=dataclasses.replace(r.train, seed=0)) for r in runs}) != 1:
        raise ValueError("fused runs must differ only in their seed (same net, data and recipe); "
                         "group the runs by everything but the seed first")
    if runs[0].train.warmup and not warmup_ok:
        raise ValueError(f"{runs[0].name} uses the warm-up (lr 0.01 until its own training error is below 80%), "
                         "which ends at a different iteration for each seed; train each alone to fuse_point and "
                         "fuse them there (FusedTrainer's start_from; run_fused does it)")
    if len({r.train.seed for r in runs}) != len(runs):
        raise ValueError(f"two fused runs have the same seed: {[r.train.seed for r in runs]}")


def build_nets(runs: list[CifarRun]) -> list[nn.Module]:
    """Each run's net, initialised exactly as ``run_cifar`` initialises it."""
    nets = []
    for r in runs:
        torch.manual_seed(r.train.seed)
        nets.append(cifar_resnet(r.depth, r.shortcut, r.residual))
    return nets


class FusedSource:
    """The K runs' own training sources side by side, as one batch source of the engine: x (B, 3K, H, W),
    y (B, K). Each run's batches are exactly those it would get alone (its seed's order and augmentation)."""

    def __init__(self, sources, dtype: torch.dtype | None = None):
        self.sources, self.dtype = list(sources), dtype
        self.batch_size, self.num_examples = self.sources[0].batch_size, self.sources[0].num_examples

    def __len__(self) -> int:
        return len(self.sources[0])

    def batches(self, epoch: int = 0, start: int = 0, rank: int = 0, world: int = 1):
        for pairs in zip(*(s.batches(epoch, start, rank, world) for s in self.sources)):
            x = torch.cat([x for x, _ in pairs], 1)
            yield (x if self.dtype is None else x.to(self.dtype)), torch.stack([y for _, y in pairs], 1)


def fused_batches(sources, epoch: int, start: int = 0):
    """The K sources' batches side by side: x (B, 3K, H, W), y (B, K)."""
    return FusedSource(sources).batches(epoch, start)


@torch.no_grad()
def evaluate_fused(net: nn.Module, source, dev: torch.device, bf16: bool, dtype=None) -> list[dict]:
    """Each fused run's mean cross-entropy and top-1 error over every batch of ``source`` (every run sees
    the same images: they are repeated along the channel axis)."""
    k, was_training = net.fused_k, net.training
    net.eval()
    loss, wrong, n = torch.zeros(k, dtype=torch.float64, device=dev), torch.zeros(k, dtype=torch.long, device=dev), 0
    with autocast(dev, bf16):
        for x, y in source.batches(0):
            x, y = x.to(dev, dtype or x.dtype, non_blocking=True), y.to(dev, non_blocking=True)
            out = net(x.repeat(1, k, 1, 1)).float()  # (B, K, classes)
            b, _, c = out.shape
            yk = y[:, None].expand(b, k)
            loss += F.cross_entropy(out.reshape(b * k, c), yk.reshape(-1), reduction="none").view(b, k).sum(0).double()
            wrong += (out.argmax(2) != yk).sum(0)
            n += b
    net.train(was_training)
    return [{"loss": lo / n, "err": w / n} for lo, w in zip(loss.tolist(), wrong.tolist())]


def fused_step(net, opt, x, y, dev, bf16, cache: bool = True):
    """Forward, backward and SGD update of the fused net (gradients already cleared); device tensors out:
    each run's loss (K,) and misclassified count (K,)."""
    with autocast(dev, bf16, cache):
        out = net(x)
        loss = fused_loss(out, y)
    loss.backward()
    opt.step()
    with torch.no_grad():
        b, k, c = out.shape
        per_run = torch.nn.functional.cross_entropy(out.float().reshape(b * k, c), y.reshape(-1), reduction="none")
        per_run = per_run.view(b, k).mean(0)
    return per_run, (out.argmax(2) != y).sum(0)


def FusedGraphStep(net, opt, dev, bf16, eager_steps: int = 3) -> CudaGraphStep:
    """``fused_step`` captured in a CUDA graph and replayed: the engine's ``CudaGraphStep`` with this step."""
    return CudaGraphStep(net, opt, dev, bf16, eager_steps, step_fn=fused_step)


# ----------------------------------------------------------------------------- K runs trained as one

def fused_identity(runs: list[CifarRun]) -> dict:
    return {"fused": [r.identity for r in runs]}


def fused_slug(runs: list[CifarRun]) -> str:
    """The fused job's folder: the runs' common settings, their seeds, the hash of all their identities."""
    common = runs[0].slug.rsplit("_s", 1)[0]
    return f"fused_{common}_s{'+'.join(str(r.train.seed) for r in runs)}-{identity_hash(fused_identity(runs))}"


class FusedTrainer(Trainer):
    """The engine's ``Trainer`` for K seeds of one run in one fused net (see the module docstring).

    Iterations, checkpoints (of the fused net, in ``job_dir``) and resuming are the engine's; what differs is
    per run: each run keeps its own training tallies and curve, each evaluation scores all K runs in one pass,
    and ``finish`` writes every run's own folder (``run_dirs``) as ``run_cifar`` would have: its result, and a
    checkpoint of its own weights, momentum and state, so ``load_model``, the export and ``run_cifar`` itself
    (which then returns the stored result) treat it like any other run."""
    step_fn = staticmethod(fused_step)
    compilable = False  # the CPU's compiled step is the ordinary one; fused runs are a GPU tool

    def __init__(self, runs: list[CifarRun], data: Cifar10, *, job_dir=None, run_dirs=None, device="auto",
                 progress: bool = True, dtype: torch.dtype | None = None, rebuild: str | None = None,
                 start_from=None):
        check_fusable(runs, warmup_ok=True)
        if DistEnv.from_env().world > 1:
            raise UserError("fused seeds train in one process on one device; start them without torchrun")
        dev = pick_device(device)
        self.runs, self.k, self.dtype = list(runs), len(runs), dtype
        self.run_dirs = [Path(d) for d in run_dirs] if run_dirs is not None else None
        src = run_sources(runs[0], data, dev)  # the images once; each run draws its own order and augmentation
        train = FusedSource([src.train.with_seed(r.train.seed) for r in runs], dtype)
        net = fuse([n.to(dtype or torch.float32) for n in build_nets(runs)])
        seeds = ",".join(str(r.train.seed) for r in runs)
        super().__init__(net, train, src.curve, runs[0].train, run_dir=job_dir, device=dev,
                         identity=fused_identity(runs), extra=src.extra, rebuild=rebuild, progress=progress,
                         desc=f"{runs[0].name} seeds {seeds}", final_source=src.final)
        self.per_run = [RunState() for _ in runs]
        self.warmup_ended: list[int | None] = [None] * self.k
        self.warmed = not runs[0].train.warmup  # with the warm-up: only from start_from or the job's checkpoint
        if start_from is not None:
            self._start_from([Path(d) for d in start_from])

    def _start_from(self, dirs: list[Path]) -> None:
        """Start from the K runs' own checkpoints, all at one iteration and past the warm-up."""
        ckpts = []
        for run, d in zip(self.runs, dirs):
            ckpt = load_checkpoint(d / CHECKPOINT, self.dev)
            check_identity(ckpt, d / CHECKPOINT, run.identity)
            ckpts.append(ckpt)
        states = [RunState.from_dict(c["state"]) for c in ckpts]
        where = {(st.iteration, st.epoch, st.batch) for st in states}
        if len(where) != 1:
            raise ValueError(f"runs can be fused only at one point of their schedule; their checkpoints are at "
                             f"{sorted(where)} (iteration, epoch, batch)")
        if any(c["schedule"]["warming"] for c in ckpts):
            raise ValueError("a run is still in its warm-up at the checkpoint; train it alone until it ends")
        self.model.load_state_dict(fuse_states([c["model"] for c in ckpts], self.model.state_dict()))
        self.opt.load_state_dict(fuse_optimizer_states([c["optimizer"] for c in ckpts], self.model))
        self.schedule.load_state_dict({"warming": False, "warmup_ended_at": None})
        self.warmup_ended = [c["schedule"]["warmup_ended_at"] for c in ckpts]
        first = states[0]
        self.state = RunState(iteration=first.iteration, epoch=first.epoch, batch=first.batch,
                              wall=sum(st.wall for st in states),  # the device time of the runs alone so far
                              pieces=[dict(p) for p in first.pieces])  # the runs trained alone side by side
        self.per_run = [RunState(since_eval=st.since_eval, history=st.history) for st in states]
        self.warmed = True

    def steps(self, stop_after: int | None = None):
        if not self.warmed:
            raise ValueError(f"{self.runs[0].name} uses the warm-up, whose end differs between seeds: start the "
                             "fused net from the runs' checkpoints past it (start_from), as run_fused does")
        return super().steps(stop_after)

    def _restart(self) -> None:
        super()._restart()
        self.per_run = [RunState() for _ in self.runs]
        self.warmed = not self.runs[0].train.warmup

    def drain(self) -> None:
        if not self.pending:
            return
        values = torch.stack([p.values for p in self.pending]).tolist()  # (steps, 2, K)
        pending, self.pending = self.pending, []
        for p, (losses, wrongs) in zip(pending, values):
            for run, rs, loss, wrong in zip(self.runs, self.per_run, losses, wrongs):
                if not math.isfinite(loss) or loss > self.cfg.diverge_loss:
                    self._diverged(p, loss, who=f" of {run.name} seed {run.train.seed}")
                rs.since_eval.add(loss, int(wrong), p.n)

    def evaluate_and_log(self, it: int, lr: float) -> None:
        evs = evaluate_fused(self.model, self.eval_source, self.dev, self.bf16, self.dtype)
        for rs, ev in zip(self.per_run, evs):
            record_point(rs, it, lr, ev)
        self.bar.set_postfix(test_err="/".join(f"{ev['err']:.3f}" for ev in evs), lr=f"{lr:g}")

    def checkpoint_payload(self) -> dict:
        runs = [{"since_eval": dataclasses.asdict(rs.since_eval), "history": rs.history, "warmup_ended_at": w}
                for rs, w in zip(self.per_run, self.warmup_ended)]
        return {**super().checkpoint_payload(), "runs": runs}

    def restore_extra(self, ckpt: dict) -> None:
        if len(ckpt["runs"]) != self.k:
            raise ValueError(f"the checkpoint holds {len(ckpt['runs'])} runs, this job has {self.k}")
        self.per_run = [RunState(since_eval=Tally(**d["since_eval"]), history=d["history"]) for d in ckpt["runs"]]
        self.warmup_ended = [d.get("warmup_ended_at") for d in ckpt["runs"]]
        self.warmed = True

    def finish(self) -> list[dict]:
        """Each run's result (and, with ``run_dirs``, its folder: checkpoint, then result, each atomically);
        then the fused job's own checkpoints go, as every run's folder now holds its share."""
        finals = evaluate_fused(self.model, self.final_source, self.dev, self.bf16, self.dtype) \
            if self.final_source is not None else \
            [{"err": rs.history["test_err"][-1], "loss": rs.history["test_loss"][-1]} for rs in self.per_run]
        weights, momenta = split_state(self.model), split_optimizer_state(self.model, self.opt.state_dict())
        seeds = [r.train.seed for r in self.runs]
        results = []
        for k, (run, rs, final) in enumerate(zip(self.runs, self.per_run, finals)):
            schedule = self.schedule.state_dict()
            extra = {**self.extra, "fused": {"k": self.k, "seeds": seeds,
                                             "job": self.run_dir.name if self.run_dir else None}}
            result = self.result_record(run.identity, run.spec, run.train, rs.history, final, extra)
            result["warmup_ended_at"] = schedule["warmup_ended_at"] = self.warmup_ended[k]
            results.append(result)
            if self.run_dirs is not None:
                d = ensure_writable_dir(self.run_dirs[k])
                st = dataclasses.replace(self.state, since_eval=Tally(), since_warm=Tally(), history=rs.history)
                save_checkpoint(d, {"identity": run.identity, "model": weights[k], "optimizer": momenta[k],
                                    "schedule": schedule, "state": dataclasses.asdict(st)})
                atomic_write_json(d / RESULT, results[-1])
        if self.run_dirs is not None and self.run_dir is not None:
            for f in (CHECKPOINT, PREVIOUS):
                (self.run_dir / f).unlink(missing_ok=True)
            self.run_dir.rmdir() if not any(self.run_dir.iterdir()) else None
        return results


def run_fused(runs: list[CifarRun], root, device="auto", progress: bool = True, data=None,
              stop_after: int | None = None) -> list[dict] | dict:
    """``run_cifar`` for K seeds of one run at once: the runs' results, each stored in its own folder under
    ``root`` exactly where ``run_cifar`` stores it. Runs already finished there are returned as they are;
    the others train together in one fused net (checkpointed under ``root/fused_...``, resumed from there;
    one left alone trains by ``run_cifar``; with the warm-up, see the module docstring). ``stop_after`` stops
    the run or job in training at that iteration with a checkpoint, returning ``{"interrupted_at"}``."""
    while True:
        trainer = fused_trainer(runs, root, device, progress, data)
        if isinstance(trainer, list):
            return trainer
        run_trainer(trainer, stop_after)
        if not trainer.complete and stop_after is not None and trainer.state.iteration >= stop_after:
            return {"interrupted_at": trainer.state.iteration}
        # complete, or at a planned stop (where warmed-up runs are fused): the next part of the job


def stored_results(runs: list[CifarRun], root) -> list[dict | None]:
    """The finished result of each run in its folder under ``root`` (None where there is none)."""
    root = Path(root)
    return [read_result(root / r.slug / RESULT, r.identity, r.command(root), RUN_KEYS) for r in runs]


def _where(run_dir: Path) -> tuple[int, bool]:
    """(iteration, still warming up) of the run's checkpoint; (0, True) without one."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        return 0, True
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return int(ckpt["state"]["iteration"]), bool(ckpt["schedule"]["warming"])


def fused_trainer(runs: list[CifarRun], root, device="auto", progress: bool = True, data=None) -> Trainer | list[dict]:
    """The next part of ``run_fused``: the runs' stored results when every one is finished, else the ``Trainer``
    that trains on: a ``FusedTrainer`` of the unfinished runs (resumed from the job's checkpoint); with the
    warm-up, first each run's own trainer to its next curve point (its ``stop_after``) while it warms up, then
    to the furthest run's point (see the module docstring); one run left: its own, to the end."""
    runs = [r.resolved(pick_device(device)) for r in runs]  # "auto" precision named, as run_cifar names it
    check_fusable(runs, warmup_ok=True)
    root = Path(root)
    stored = stored_results(runs, root)
    todo = [r for r, res in zip(runs, stored) if res is None]
    if not todo:
        return stored
    if len(todo) == 1:
        return cifar_trainer(todo[0], root, device=device, progress=progress, data=data)
    job = root / fused_slug(todo)
    start_from = None
    if todo[0].train.warmup and not (job / CHECKPOINT).exists():
        where = [_where(root / r.slug) for r in todo]
        every = todo[0].train.eval_every
        warming = [(r, it) for r, (it, w) in zip(todo, where) if w]
        furthest = max(it for it, _ in where)
        behind = [(r, it) for r, (it, _) in zip(todo, where) if it < furthest]
        if warming or behind:  # alone: to the next curve point while warming up, then up to the furthest run
            r, it = warming[0] if warming else behind[0]
            trainer = cifar_trainer(r, root, device=device, progress=progress, data=data)
            trainer.stop_after = (it // every + 1) * every if warming else furthest
            return trainer
        start_from = [root / r.slug for r in todo]
    ensure_writable_dir(job, fix="choose another folder (the campaign's --out)")
    trainer = FusedTrainer(todo, data or load_cifar10(), job_dir=job, run_dirs=[root / r.slug for r in todo],
                           device=device, progress=progress, start_from=start_from,
                           rebuild="python -m resnet_lib campaign (the campaign that made it)")
    trainer.resume()  # the job's checkpoint, if any (a job folder never holds a result)
    if not trainer.warmed:  # the job's checkpoint was damaged (moved aside): start again from the runs' own
        return fused_trainer(runs, root, device, progress, data)
    return trainer


def train_fused(runs: list[CifarRun], data: Cifar10, device="auto", dtype: torch.dtype | None = None,
                progress: bool = False) -> tuple[list[nn.Module], list[dict]]:
    """Train K seeds of one run together to the end of their recipe, with no folder; returns the K nets
    (``models.fused.unfuse``) and their results. ``dtype`` float64 is for checking exactness (the tests)."""
    trainer = FusedTrainer(runs, data, device=device, dtype=dtype, progress=progress)
    trainer.train()
    return unfuse(trainer.model.cpu()), trainer.finish()
