"""The training engine: the paper's SGD recipe, counted in iterations, resumable, and torchrun-ready.

``fit`` trains any model on any *batch source*: an object with ``batch_size`` (the global batch),
``__len__`` (batches per epoch) and ``batches(epoch, start=0, rank=0, world=1)``, which yields this
rank's share of each global batch of ``epoch`` from batch ``start`` on, deterministically. That
contract is what makes a resumed run end exactly where an uninterrupted one does: the checkpoint
records (iteration, epoch, batch) and the source regenerates the rest of the epoch.

A :class:`Trainer` reads in the order it works, as pytorch/examples' ``multigpu_torchrun.py`` does:
``resume`` (a stored result or checkpoint), ``train`` (epochs of ``step``), ``drain`` (read the losses
back, stop on divergence), ``evaluate_and_log``, ``save_checkpoint``, ``finish`` (the result, written once).

Under torchrun (RANK / WORLD_SIZE / LOCAL_RANK set), ``fit`` wraps the model in
DistributedDataParallel, each rank takes its slice of every global batch, and only rank 0 shows
progress and writes checkpoints and results.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..base.device import pick_device, tf32_convolutions
from ..base.errors import UserError
from ..base.io import (
    _json_default,
    atomic_write_json,
    clean_stale_temps,
    device_name,
    ensure_writable_dir,
    git_revision,
    provenance,
    utc_now,
)
from ..base.precision import attach, canonical, resolve, set_backends
from .checkpoint import (
    CHECKPOINT,
    FORMAT,
    RESULT,
    DamagedFile,
    check_identity,
    keep_checkpoint_before,
    load_checkpoint,
    load_state_checked,
    move_aside,
    read_result,
    run_identity,
    save_checkpoint,
)
from .compiled import CompiledStep, use_compile
from .config import StepSchedule, TrainConfig
from .cuda_graph import CudaGraphStep, use_cuda_graph
from .distributed import DistEnv
from .state import RunState, Tally, open_piece, precision_of, record_point
from .step import evaluate, make_optimizer, resolve_formats, sgd_step  # noqa: F401 (evaluate: API)


class TrainingDiverged(UserError, RuntimeError):
    """The loss became NaN or exploded; the message says what to change and which checkpoint is good."""


@dataclass
class Pending:
    """A step whose loss is still on the device (read back by ``drain``)."""
    iteration: int
    lr: float
    n: int
    values: torch.Tensor  # (loss, wrong)


class Trainer:
    """Trains one model by ``cfg`` with its data, schedule and (optional) run folder; see :func:`fit`.

    A subclass may train something else the same way (``campaign.fused_runs.FusedTrainer``: K seeds in
    one wide net): it sets ``step_fn`` (the SGD step, ``sgd_step``'s signature) and ``compilable``, and
    overrides ``drain``, ``evaluate_and_log``, ``checkpoint_payload``/``restore_extra`` and ``finish``."""
    step_fn = staticmethod(sgd_step)
    compilable = True

    def __init__(self, model: nn.Module, train_source, eval_source, cfg: TrainConfig, *, run_dir=None,
                 schedule=None, device="auto", spec: dict | None = None, identity: dict | None = None,
                 extra: dict | None = None, rebuild: str | None = None, progress: bool = True,
                 desc: str = "train", final_source=None):
        self.dev, self.env = pick_device(device), DistEnv.from_env()
        if self.env.world > 1 and self.dev.type == "cuda" and self.dev.index is None:  # one GPU per process
            self.dev = torch.device("cuda", self.env.local_rank)
            torch.cuda.set_device(self.dev)
        cfg = cfg.resolved(self.dev)  # "auto" becomes the policy it means here: part of the run's identity
        self.policy = resolve(self.dev, cfg.precision)
        self.bf16, self.cl = resolve_formats(self.dev, cfg)
        set_backends(self.dev, self.policy)  # on a GPU, fp32 convolutions would otherwise be TF32
        attach(model, self.policy)
        if train_source.batch_size != cfg.batch_size:
            raise ValueError(f"the training source makes batches of {train_source.batch_size}, the config asks "
                             f"for {cfg.batch_size}; build the source with batch_size={cfg.batch_size}")
        if len(train_source) == 0:
            raise ValueError("the training source yields no full batch: it has fewer examples than one batch")
        self.model, self.cfg, self.spec, self.extra = model, cfg, spec, extra or {}
        self.train_source, self.eval_source, self.final_source = train_source, eval_source, final_source
        self.run_dir = Path(run_dir) if run_dir else None
        self.identity = identity if identity is not None else run_identity(spec, cfg)
        named = (self.identity.get("train") or {}).get("precision", cfg.precision)
        if canonical(named) != cfg.precision:
            raise ValueError(f"the run's identity names precision {named!r} but it trains in {cfg.precision!r} on "
                             f"{self.dev}: build the identity from the resolved config (TrainConfig.resolved)")
        self.fmt = torch.channels_last if self.cl else torch.contiguous_format
        self.rebuild, self.progress, self.desc = rebuild, progress, desc
        self.schedule = schedule or StepSchedule(cfg)
        model.to(self.dev, memory_format=self.fmt)
        self.opt = make_optimizer(model, cfg)
        self.state = RunState()
        self.compiled = None  # set by train() where engine.compiled applies
        self.stop_after: int | None = None  # a planned stop short of the end (e.g. where runs are fused)
        self.pending: list[Pending] = []
        # steps are read back every `sync_every` iterations on a GPU (and before every evaluation and
        # checkpoint), so the CPU runs ahead instead of waiting for each step; it divides warmup_window,
        # so each warm-up check sees every step
        self.sync_every = cfg.warmup_window if self.dev.type == "cuda" else 1

    # ---------------------------------------------------------------------------------- resume
    def resume(self) -> dict | None:
        """Prepare the run folder; return the stored result of this very run if there is one, else load
        this run's checkpoint if there is one. A damaged or foreign file is moved aside."""
        if self.run_dir is None:
            return None
        if self.env.main:
            ensure_writable_dir(self.run_dir)
            clean_stale_temps(self.run_dir)
        stored = read_result(self.run_dir / RESULT, self.identity, self.rebuild, tuple(self.extra), self.env.main)
        if stored is not None:
            return stored
        path = self.run_dir / CHECKPOINT
        if path.exists():
            try:
                self._load(path)
            except DamagedFile as e:
                self._restart()
                if self.env.main:
                    move_aside(path, str(e).removeprefix(f"{path} "), self.rebuild)
        return None

    def _load(self, path: Path) -> None:
        ckpt = load_checkpoint(path, self.dev, self.rebuild)
        check_identity(ckpt, path, self.identity)
        initial = {k: v.clone() for k, v in self.model.state_dict().items()}
        try:  # the schedule last: a failure before it leaves it untouched, and _restart renews the rest
            state = RunState.from_dict(ckpt["state"])
            self.restore_extra(ckpt)
            load_state_checked(self.model, ckpt["model"], path)
            self.opt.load_state_dict(ckpt["optimizer"])
            self.schedule.load_state_dict(ckpt["schedule"])
            self.state = state
        except DamagedFile:
            raise  # found before anything was loaded
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            self.model.load_state_dict(initial)
            raise DamagedFile(f"{path} holds a run state this version cannot resume ({type(e).__name__}: "
                              f"{str(e)[:120]})") from e

    @property
    def precision(self) -> str:
        return self.policy.label

    def restore_extra(self, ckpt: dict) -> None:
        """Read what ``checkpoint_payload`` adds to the engine's keys (nothing here)."""

    def _restart(self) -> None:
        self.opt = make_optimizer(self.model, self.cfg)
        self.state = RunState()

    # ----------------------------------------------------------------------------------- train
    def train(self, stop_after: int | None = None) -> bool:
        """Train to ``cfg.iters`` (or to ``stop_after``, or ``self.stop_after``); True when the run is complete."""
        for _ in self.steps(stop_after):
            pass
        return self.complete

    def steps(self, stop_after: int | None = None):
        """``train`` one step at a time: a generator that yields after each SGD step and ends where ``train``
        ends (``self.complete`` then says whether the run is complete). Whoever drives it may stop between
        two steps with :meth:`stop` (the campaign advances several runs in turn this way)."""
        cfg, st = self.cfg, self.state
        self.net = nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.dev.index] if self.dev.type == "cuda" else None) \
            if self.env.world > 1 else self.model
        self.graphed = use_cuda_graph(self.dev, cfg, self.env.world)
        self.graph_step = CudaGraphStep(self.net, self.opt, self.dev, self.bf16, step_fn=self.step_fn) \
            if self.graphed else None
        self.compiled = CompiledStep(self.net) if self.compilable and use_compile(self.dev, cfg, self.env.world) \
            else None
        self.sgd = self.compiled or functools.partial(self.step_fn, self.net)  # (opt, x, y, dev, bf16)
        end = min(s for s in (cfg.iters, stop_after, self.stop_after) if s is not None)
        self.bar = tqdm(total=cfg.iters, initial=st.iteration, desc=self.desc, dynamic_ncols=True, leave=True,
                        disable=not (self.progress and self.env.main))
        self.t_start = time.perf_counter() - st.wall
        self.piece = open_piece(st, device_name(self.dev), utc_now(), str(torch.__version__), git_revision(),
                                self.precision)
        self.piece_t0 = st.wall - self.piece["wall_s"]
        self.net.train()
        while st.iteration < end:
            batches = self.train_source.batches(st.epoch, start=st.batch, rank=self.env.rank, world=self.env.world)
            for x, y in batches:
                self.step(x, y, end)
                yield
                if st.iteration >= end:
                    break
            else:
                st.epoch, st.batch = st.epoch + 1, 0
        self.stop()

    def stop(self) -> bool:
        """Stop training here (after any whole step): read back what is pending and, short of the end,
        checkpoint, as an interruption would: resumable from here. True when the run is complete."""
        self.drain()
        self.bar.close()
        st = self.state
        self.clock()
        self.complete = st.iteration >= self.cfg.iters
        if not self.complete:
            self.save_checkpoint()
        return self.complete

    def step(self, x, y, end: int) -> None:
        """One SGD step, then whatever falls due at the new iteration: read-back, warm-up rule,
        evaluation, checkpoint."""
        cfg, st = self.cfg, self.state
        it = st.iteration
        lr = self.schedule.lr_at(it)
        for g in self.opt.param_groups:
            g["lr"] = lr
        if self.graph_step is not None:
            loss, wrong = self.graph_step(x.contiguous(memory_format=self.fmt), y)
        else:
            x, y = x.to(self.dev, non_blocking=True), y.to(self.dev, non_blocking=True)
            x = x.contiguous(memory_format=self.fmt)  # the model's format, whatever the source's
            self.opt.zero_grad(set_to_none=True)
            loss, wrong = self.sgd(self.opt, x, y, self.dev, self.bf16)
        self.pending.append(Pending(it, lr, len(y), torch.stack((loss.float(), wrong.float()))))
        st.iteration, st.batch = it + 1, st.batch + 1
        it += 1
        must_eval = it % cfg.eval_every == 0 or it == cfg.iters
        must_save = it == cfg.iters or bool(cfg.checkpoint_every and it % cfg.checkpoint_every == 0)
        if it % self.sync_every == 0 or must_eval or must_save or it >= end:
            self.drain()
        if st.since_warm.seen and it % cfg.warmup_window == 0:
            self.schedule.observe(it, train_err=st.since_warm.wrong / st.since_warm.seen)
            st.since_warm = Tally()
        self.bar.update(1)
        if must_eval:
            self.evaluate_and_log(it, lr)
        self.clock()
        if must_save:
            self.save_checkpoint()

    def clock(self) -> None:
        """Bring the run's training time, and the piece this call trains, up to now."""
        st = self.state
        st.wall = time.perf_counter() - self.t_start
        self.piece["end"], self.piece["wall_s"] = st.iteration, round(st.wall - self.piece_t0, 2)

    def drain(self) -> None:
        """Read back the pending steps' losses (one transfer), add them up, stop on divergence."""
        if not self.pending:
            return
        values = torch.stack([p.values for p in self.pending]).tolist()
        for p, (loss, wrong) in zip(self.pending, values):
            if not math.isfinite(loss) or loss > self.cfg.diverge_loss:
                self.pending.clear()
                self._diverged(p, loss)
            self.state.since_eval.add(loss, int(wrong), p.n)
            self.state.since_warm.add(0.0, int(wrong), p.n)
        self.pending.clear()

    def _diverged(self, p: Pending, loss: float, who: str = ""):
        cfg, note = self.cfg, ""
        if self.run_dir is not None and self.env.main:
            # the weights after step i are first tested by step i+1's loss: keep a checkpoint from before p
            path, at = keep_checkpoint_before(self.run_dir, p.iteration)
            note = f" The last good checkpoint, from iteration {at}, is {path}." if path else \
                " No checkpoint was written before it."
        self.bar.close()
        raise TrainingDiverged(
            f"training{who} diverged at iteration {p.iteration} (loss {loss:.4g}, lr {p.lr:g}). Lower the learning "
            f"rate, or use the warm-up the paper uses for ResNet-110 (warmup=True: lr {cfg.warmup_lr} until "
            f"training error < {cfg.warmup_until_err:.0%}).{note}")

    def evaluate_and_log(self, it: int, lr: float) -> None:
        st = self.state
        ev = evaluate(self.model, self.eval_source, self.dev, self.bf16, self.fmt)
        self.schedule.observe(it, test_err=ev["err"])
        record_point(st, it, lr, ev)
        self.bar.set_postfix(train_err=f"{st.history['train_err'][-1]:.3f}", test_err=f"{ev['err']:.3f}", lr=f"{lr:g}")

    def checkpoint_payload(self) -> dict:
        return {"identity": self.identity, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "schedule": self.schedule.state_dict(), "state": dataclasses.asdict(self.state)}

    def save_checkpoint(self) -> None:
        if self.run_dir is None or not self.env.main:
            return
        save_checkpoint(self.run_dir, self.checkpoint_payload())

    # ---------------------------------------------------------------------------------- finish
    def finish(self) -> dict:
        """The result: final numbers, the curve, how it ran; written once, atomically, with ``extra``."""
        cfg, hist = self.cfg, self.state.history
        final = evaluate(self.model, self.final_source, self.dev, self.bf16, self.fmt) if self.final_source is not None \
            else {"err": hist["test_err"][-1], "loss": hist["test_loss"][-1]}
        result = self.result_record(self.identity, self.spec, cfg, hist, final, self.extra)
        if self.run_dir and self.env.main:
            atomic_write_json(self.run_dir / RESULT, result)
        return result

    def result_record(self, identity: dict, spec, cfg: TrainConfig, hist: dict, final: dict, extra: dict) -> dict:
        """A run's result as stored (JSON types): what a later reuse of the run returns."""
        st, step = self.state, getattr(self, "graph_step", None)
        result = {"format": FORMAT, "identity": identity, "spec": spec, "config": dataclasses.asdict(cfg),
                  "history": hist,
                  "final": {"train_err": hist["train_err"][-1], "test_err": final["err"], "test_loss": final["loss"]},
                  "wall_s": round(st.wall, 2), "img_per_s": round(cfg.iters * cfg.batch_size / max(st.wall, 1e-9), 1),
                  "warmup_ended_at": getattr(self.schedule, "warmup_ended_at", None),
                  "precision": precision_of(st.pieces, self.precision), "channels_last": self.cl,
                  "tf32": self.dev.type == "cuda" and not self.bf16 and tf32_convolutions(),
                  "world_size": self.env.world, "cuda_graph": bool(getattr(self, "graphed", False)),
                  "graph_captures": step.captures if step else 0,
                  "compiled": self.compiled is not None and self.compiled.state == "compiled",
                  "pieces": st.pieces, "provenance": provenance(self.dev), **extra}
        return json.loads(json.dumps(result, default=_json_default))


def fit(model: nn.Module, train_source, eval_source, cfg: TrainConfig = TrainConfig(), *,
        run_dir: str | os.PathLike | None = None, schedule=None, device="auto", progress: bool = True,
        spec: dict | None = None, resume: bool = True, stop_after: int | None = None, desc: str = "train",
        final_source=None, identity: dict | None = None, extra: dict | None = None,
        rebuild: str | None = None) -> dict:
    """Train ``model`` with SGD by ``cfg``; evaluate on ``eval_source`` every ``cfg.eval_every`` iterations.

    With ``run_dir``, checkpoints go to ``run_dir/checkpoint.pt`` (atomically) and the result to
    ``run_dir/result.json`` (once, at the end, with ``extra`` merged in). The run's ``identity`` (default:
    ``spec`` and ``cfg``, see ``checkpoint.run_identity``; pass the data options too) is stored with both:
    a stored result or checkpoint is used only for the same identity, and a damaged or foreign one is moved
    aside (``rebuild``, the command that makes the run, is named in the warning). ``resume=False`` starts
    afresh. ``stop_after`` ends the call early at that iteration with a checkpoint, as an interruption would,
    and returns ``{"interrupted_at", "history"}``. ``final_source`` (default ``eval_source``) is evaluated
    once at the end for the final numbers, so the curve points may use a cheaper subset.
    """
    trainer = Trainer(model, train_source, eval_source, cfg, run_dir=run_dir, schedule=schedule, device=device,
                      spec=spec, identity=identity, extra=extra, rebuild=rebuild, progress=progress, desc=desc,
                      final_source=final_source)
    if resume:
        stored = trainer.resume()
        if stored is not None:
            return stored
    elif trainer.run_dir is not None:
        ensure_writable_dir(trainer.run_dir)
    return run_trainer(trainer, stop_after)


def run_trainer(trainer: Trainer, stop_after: int | None = None):
    """Train a prepared (resumed) ``trainer`` to its end, or to ``stop_after``: its result, or
    ``{"interrupted_at", "history"}`` when it stopped early."""
    if not trainer.train(stop_after):
        return {"interrupted_at": trainer.state.iteration, "history": trainer.state.history}
    return trainer.finish()
