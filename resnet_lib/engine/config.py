"""The optimisation recipe: Section 4.2's SGD settings as a frozen dataclass, counted in iterations,
and the step learning-rate schedule with the ResNet-110 warm-up."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..base.precision import canonical, resolve

# A pass over CIFAR-10's 10k test images costs about as much as 26 training iterations of 128 images
# (a forward pass is about a third of forward + backward): evaluating every 200 iterations or more keeps
# evaluation under about an eighth of the time, however short the run.
MIN_EVAL_EVERY = 200


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe; defaults are Section 4.2's CIFAR-10 recipe."""
    batch_size: int = 128              # images per iteration, all ranks together (Section 4.2)
    lr: float = 0.1                    # starting learning rate
    momentum: float = 0.9
    weight_decay: float = 1e-4         # on every parameter, BN's too, as in fb.resnet.torch (FAIR's reimplementation)
    iters: int = 64_000                # "terminate training at 64k iterations"
    milestones: tuple[int, ...] = (32_000, 48_000)  # lr divided by 10 at each
    warmup: bool = False               # ResNet-110: lr 0.01 "until the training error is below 80%"
    warmup_lr: float = 0.01
    warmup_until_err: float = 0.80     # fraction, training error over the last `warmup_window` iterations
    warmup_window: int = 50
    eval_every: int = 2_000            # iterations between test-set evaluations
    checkpoint_every: int = 2_000      # iterations between checkpoints (0: only at the end)
    seed: int = 0                      # model init and data order
    precision: str = "auto"            # a policy of base.precision: "fp32" (the paper), "tf32", "bf16", "bf16-conv";
    #                                    "auto": the fastest faithful one on the device (the older "off" is "fp32")
    channels_last: str = "auto"        # "auto": with bf16; "on"; "off"
    diverge_loss: float = 100.0        # a training loss above this (or NaN) stops the run
    cuda_graph: str = "auto"           # "auto": capture the whole SGD step in a CUDA graph on one GPU; "on"; "off"
    compile: str = "auto"              # "auto": torch.compile on a CPU for runs of 3k+ iterations (engine.compiled)

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
        try:  # one name per policy, so that equal runs have equal identities
            object.__setattr__(self, "precision", canonical(self.precision))
        except ValueError as e:
            problems.append(str(e))
        if self.cuda_graph not in ("auto", "on", "off"):
            problems.append(f"cuda_graph must be 'auto', 'on' or 'off', got {self.cuda_graph!r}")
        if self.compile not in ("auto", "on", "off"):
            problems.append(f"compile must be 'auto', 'on' or 'off', got {self.compile!r}")
        if self.channels_last not in ("auto", "on", "off"):
            problems.append(f"channels_last must be 'auto', 'on' or 'off', got {self.channels_last!r}")
        if problems:
            raise ValueError("bad TrainConfig: " + "; ".join(problems))

    def resolved(self, device: torch.device) -> "TrainConfig":
        """This config with "auto" precision replaced by the policy it means on ``device``: the policy is part of
        a run's identity, so a run is one precision wherever it is resumed."""
        if self.precision != "auto":
            return self  # a named policy is itself wherever it trains (the Trainer checks the device can run it)
        return dataclasses.replace(self, precision=resolve(device, "auto").name)

    def scaled(self, factor: float) -> "TrainConfig":
        """The same schedule shape over ``factor`` times as many iterations (e.g. 0.01 for a quick run)."""
        if factor <= 0:
            raise ValueError(f"scale factor must be positive, got {factor}")
        return self.with_iters(max(1, round(self.iters * factor)))

    def with_iters(self, iters: int) -> "TrainConfig":
        """Stretch or shrink the schedule to ``iters`` iterations, keeping where the lr drops (50%, 75%).
        Evaluations stay at least ``MIN_EVAL_EVERY`` iterations apart (and there is always one at the end)."""
        if not isinstance(iters, int) or iters <= 0:
            raise ValueError(f"iters must be a positive integer, got {iters!r}")
        f = iters / self.iters
        sc = lambda v: max(1, round(v * f))
        return dataclasses.replace(self, iters=iters, milestones=tuple(sc(m) for m in self.milestones),
                                   eval_every=min(max(sc(self.eval_every), MIN_EVAL_EVERY), iters),
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
