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

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..base.device import autocast, pick_device, use_bf16
from ..base.io import atomic_torch_save, atomic_write_json, provenance
from .checkpoint import CHECKPOINT, RESULT, check_checkpoint
from .config import StepSchedule, TrainConfig
from .cuda_graph import CudaGraphStep, use_cuda_graph
from .distributed import DistEnv
from .step import make_optimizer, resolve_formats, sgd_step


class TrainingDiverged(RuntimeError):
    pass



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
    bf16, cl = resolve_formats(dev, cfg)
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
        check_checkpoint(ckpt, ckpt_path, spec, cfg)
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
                loss_t, wrong_t = sgd_step(net, opt, x, y, dev, bf16)
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
