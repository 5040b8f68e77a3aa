"""The campaign's sets: which runs, grouped into jobs, in which order (``campaign`` trains them).

A *job* is what one lane of the campaign advances: one run, or the further seeds of one net fused into
one wide net (``fused_runs``). The order is the order of work when time is short (issue #10): one seed
of every net first (ResNets before plain nets), then the further seeds of the ResNets. Every run of ``table6``
trains in :data:`TABLE6_PRECISION`; the ``precision`` set is ResNet-20's full recipe in fp32 and in bf16.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..experiments.cifar_runs import CifarRun, paper_recipe
from .fused_runs import fused_slug

TABLE6_DEPTHS = (20, 32, 44, 56, 110)
# The precision Table 6 and Fig. 6 train in: the paper's fp32 until the precision study (campaign.precision_study,
# results/precision/) finds a faster policy faithful to it. A run's policy is part of its identity, so runs of another
# policy (the bf16 runs of earlier sessions) are the precision study's, never Table 6's.
TABLE6_PRECISION = "fp32"


@dataclass(frozen=True)
class Entry:
    """One run of a campaign and the group folder it lives in ("main": Table 6 and Fig. 6 in
    :data:`TABLE6_PRECISION`; a policy's name: the precision study's runs in that policy)."""
    run: CifarRun
    group: str = "main"

    @property
    def key(self) -> str:
        return f"{self.group}/{self.run.slug}"

    @property
    def label(self) -> str:
        extra = "" if self.group == "main" else f" {self.group}"
        return f"{self.run.name}{extra} seed {self.run.train.seed}"


def paper_run(depth: int, residual: bool, seed: int, scale: float, subset: int, test_subset: int,
         precision: str = TABLE6_PRECISION, **recipe) -> CifarRun:
    cfg = dataclasses.replace(paper_recipe(depth), seed=seed, precision=precision, **recipe)
    if scale != 1:  # a shorter schedule of the same shape, still 32 curve points (the paper's: every 2k of 64k)
        cfg = cfg.scaled(scale)
        cfg = dataclasses.replace(cfg, eval_every=max(1, cfg.iters // 32), checkpoint_every=max(1, cfg.iters // 32))
    return CifarRun(depth, residual, "A", cfg, subset=subset, test_subset=test_subset)


@dataclass(frozen=True)
class Job:
    """What one training call advances: one run, or several seeds of one run fused into one net."""
    entries: tuple[Entry, ...]

    @property
    def group(self) -> str:
        return self.entries[0].group

    @property
    def runs(self) -> list[CifarRun]:
        return [e.run for e in self.entries]

    @property
    def iters(self) -> int:
        return self.entries[0].run.train.iters

    @property
    def key(self) -> str:
        return self.entries[0].key if len(self.entries) == 1 else f"{self.group}/{fused_slug(self.runs)}"

    @property
    def label(self) -> str:
        if len(self.entries) == 1:
            return self.entries[0].label
        extra = "" if self.group == "main" else f" {self.group}"
        return f"{self.runs[0].name}{extra} seeds {'+'.join(str(r.train.seed) for r in self.runs)} (fused)"


def _jobs(entries: list[Entry], fuse: bool) -> list[Job]:
    """The seeds of one run (same net and group) as one fused job (with the warm-up: fused after it), or alone."""
    if not fuse or len(entries) < 2:
        return [Job((e,)) for e in entries]
    return [Job(tuple(entries))]


def campaign_jobs(name: str, seeds=(1, 2, 3), scale: float = 1.0, subset: int = 0, test_subset: int = 0,
                  fuse: bool = True, precision: str = TABLE6_PRECISION) -> list[Job]:
    """The jobs of set ``name`` in the order they are trained (see the module docstring); ``table6`` and ``smoke``
    in ``precision``, in group "main" when that is Table 6's policy, else in the group named after it."""
    if scale <= 0 or scale > 1:
        raise ValueError(f"scale must be in (0, 1] (a fraction of the paper's 64k iterations), got {scale}")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    mk = lambda d, res, s, policy=precision: paper_run(d, res, s, scale, subset, test_subset, policy)
    group = "main" if precision == TABLE6_PRECISION else precision
    if name == "table6":
        first, rest = seeds[0], seeds[1:]
        jobs = [Job((Entry(mk(d, True, first), group),)) for d in TABLE6_DEPTHS]
        jobs += [Job((Entry(mk(d, False, first), group),)) for d in TABLE6_DEPTHS]
        for d in TABLE6_DEPTHS:
            jobs += _jobs([Entry(mk(d, True, s), group) for s in rest], fuse)
        return jobs
    if name == "precision":
        return [j for policy in ("fp32", "bf16")
                for j in _jobs([Entry(mk(20, True, s, policy), policy) for s in seeds], fuse)]
    if name == "smoke":  # plain-8 with a quick warm-up, so that the smoke set takes ResNet-110's path too
        warm = dict(warmup=True, warmup_window=2, warmup_until_err=0.95)
        return [j for residual in (True, False) for j in _jobs(
            [Entry(paper_run(8, residual, s, scale, subset, test_subset, precision, **({} if residual else warm)), group)
             for s in seeds], fuse)]
    raise ValueError(f"unknown campaign {name!r}; the sets are {', '.join(SETS)}")


def campaign_entries(name: str, seeds=(1, 2, 3), scale: float = 1.0, subset: int = 0,
                     test_subset: int = 0, fuse: bool = True, precision: str = TABLE6_PRECISION) -> list[Entry]:
    """The runs of set ``name`` in the order they are trained."""
    return [e for j in campaign_jobs(name, seeds, scale, subset, test_subset, fuse, precision) for e in j.entries]


SETS = ("table6", "precision", "smoke")
SET_KEYS = ("seeds", "scale", "subset", "test_subset", "fuse", "precision")  # what makes a set's jobs (campaign_jobs)


# ----------------------------------------------------------------------------- speeds, for the time still needed

def cost_units(job: Job) -> float:
    """Relative cost of one iteration: proportional to depth (ms per iteration on an H200, issue #10:
    2.42 / 13.2 for 20 / 110 layers, 5.45x for 5.5x the depth); fused jobs have speeds of their own."""
    run = job.entries[0].run
    return run.depth * run.train.batch_size / 128


def speed_key(device: str, job: Job) -> str:
    """Speeds are kept per device, precision policy and number of fused seeds. A key without a policy is bf16
    autocast (every run before other policies had speeds of their own was one)."""
    k, policy = len(job.entries), job.runs[0].train.precision
    return device + ("" if policy == "bf16" else f" | {policy}") + ("" if k == 1 else f" | {k} fused")


class Speeds:
    """Seconds per cost unit measured on each device, in each precision (and for each number of fused
    seeds): the time still needed, in the summary."""

    def __init__(self, table: dict | None = None):
        self.table = table or {}  # speed key -> [cost units trained, seconds]

    def add(self, device: str, job: Job, iters: int, seconds: float) -> None:
        key = speed_key(device, job)
        units, secs = self.table.get(key, [0.0, 0.0])
        self.table[key] = [units + iters * cost_units(job), secs + seconds]

    def per_iter(self, device: str, job: Job) -> float | None:
        units, secs = self.table.get(speed_key(device, job), [0.0, 0.0])
        return secs / units * cost_units(job) if units else None

    def estimate(self, device: str, job: Job) -> float | None:
        """``per_iter``, or for a fused job not yet measured an upper bound: its K runs one after another."""
        rate = self.per_iter(device, job)
        if rate is None and len(job.entries) > 1 and (one := self.per_iter(device, Job(job.entries[:1]))):
            rate = one * len(job.entries)
        return rate
