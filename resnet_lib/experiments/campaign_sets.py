"""The campaign's sets: which runs, grouped into jobs, in which order (``campaign`` trains them).

A *job* is what one lane of the campaign advances: one run, or the further seeds of one net fused into
one wide net (``fused_runs``). The order is the order of work when time is short (issue #10): one seed
of every net first (ResNets before plain nets, with the fp32 probe right after its bf16 twin ``PROBE_DEPTH``),
then the further seeds of the ResNets, then part 5.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..base.device import cpu_has_fast_bf16
from ..base.io import device_name
from .cifar_runs import CifarRun, paper_recipe
from .fused_runs import fused_slug

TABLE6_DEPTHS = (20, 32, 44, 56, 110)
# ResNet-56 seed 1 in full fp32, right after its bf16 twin and before ResNet-110: the bf16 runs' error rose with
# depth from ResNet-32 on, where the paper's falls, and bf16 autocast keeps the identity path in bf16; this run
# tells whether precision is the cause before ResNet-110 and the further seeds are spent on it (its record lands
# in group fp32, not Table 6)
PROBE_DEPTH = 56


@dataclass(frozen=True)
class Entry:
    """One run of a campaign and the group folder it lives in (runs that differ only in precision share
    a slug, so each precision has its own group)."""
    run: CifarRun
    group: str = "main"

    @property
    def key(self) -> str:
        return f"{self.group}/{self.run.slug}"

    @property
    def label(self) -> str:
        extra = "" if self.group == "main" else f" {self.group}"
        return f"{self.run.name}{extra} seed {self.run.train.seed}"


def _run(depth: int, residual: bool, seed: int, scale: float, subset: int, test_subset: int,
         amp: str = "auto", **recipe) -> CifarRun:
    cfg = dataclasses.replace(paper_recipe(depth), seed=seed, amp=amp, **recipe)
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
                  fuse: bool = True) -> list[Job]:
    """The jobs of set ``name`` in the order they are trained (see the module docstring)."""
    if scale <= 0 or scale > 1:
        raise ValueError(f"scale must be in (0, 1] (a fraction of the paper's 64k iterations), got {scale}")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    mk = lambda d, res, s, amp="auto": _run(d, res, s, scale, subset, test_subset, amp)
    if name == "table6":
        first, rest = seeds[0], seeds[1:]
        jobs = [Job((Entry(mk(d, True, first)),)) for d in TABLE6_DEPTHS]
        # the precision probe, before ResNet-110: if precision is the cause, 110 should not be spent in bf16
        jobs.insert(TABLE6_DEPTHS.index(PROBE_DEPTH) + 1, Job((Entry(mk(PROBE_DEPTH, True, first, "off"), "fp32"),)))
        jobs += [Job((Entry(mk(d, False, first)),)) for d in TABLE6_DEPTHS]
        for d in TABLE6_DEPTHS:
            jobs += _jobs([Entry(mk(d, True, s)) for s in rest], fuse)
        return jobs
    if name == "precision":
        return [j for amp, group in (("off", "fp32"), ("bf16", "bf16"))
                for j in _jobs([Entry(mk(20, True, s, amp), group) for s in seeds], fuse)]
    if name == "smoke":  # plain-8 with a quick warm-up, so that the smoke set takes ResNet-110's path too
        warm = dict(warmup=True, warmup_window=2, warmup_until_err=0.95)
        return [j for residual in (True, False) for j in _jobs(
            [Entry(_run(8, residual, s, scale, subset, test_subset, **({} if residual else warm))) for s in seeds], fuse)]
    raise ValueError(f"unknown campaign {name!r}; the sets are {', '.join(SETS)}")


def campaign_entries(name: str, seeds=(1, 2, 3), scale: float = 1.0, subset: int = 0,
                     test_subset: int = 0, fuse: bool = True) -> list[Entry]:
    """The runs of set ``name`` in the order they are trained."""
    return [e for j in campaign_jobs(name, seeds, scale, subset, test_subset, fuse) for e in j.entries]


SETS = ("table6", "precision", "smoke")


# ----------------------------------------------------------------------------- speeds, for the time still needed

def cost_units(job: Job) -> float:
    """Relative cost of one iteration: proportional to depth (ms per iteration on an H200, issue #10:
    2.42 / 13.2 for 20 / 110 layers, 5.45x for 5.5x the depth); fused jobs have speeds of their own."""
    run = job.entries[0].run
    return run.depth * run.train.batch_size / 128


def campaign_device(dev: torch.device) -> str:
    """The device as the campaign's calls log and speeds name it: ``device_name``, and on a CPU without fast
    bf16 (AVX2 only, or capped so) that too, since the same "cpu (x86_64, 2 threads)" trains 2-3x slower there."""
    name = device_name(dev)
    return f"{name[:-1]}, no fast bf16)" if dev.type == "cpu" and not cpu_has_fast_bf16() else name


def speed_key(device: str, job: Job, bf16: bool = True) -> str:
    """Speeds are kept per device, precision and number of fused seeds. A key without "fp32" is bf16 autocast
    (every run before fp32 runs had speeds of their own was one)."""
    k = len(job.entries)
    return device + ("" if bf16 else " | fp32") + ("" if k == 1 else f" | {k} fused")


class Speeds:
    """Seconds per cost unit measured on each device, in each precision (and for each number of fused
    seeds): the time still needed, in the summary."""

    def __init__(self, table: dict | None = None):
        self.table = table or {}  # speed key -> [cost units trained, seconds]

    def add(self, device: str, job: Job, iters: int, seconds: float, bf16: bool = True) -> None:
        key = speed_key(device, job, bf16)
        units, secs = self.table.get(key, [0.0, 0.0])
        self.table[key] = [units + iters * cost_units(job), secs + seconds]

    def per_iter(self, device: str, job: Job, bf16: bool = True) -> float | None:
        units, secs = self.table.get(speed_key(device, job, bf16), [0.0, 0.0])
        return secs / units * cost_units(job) if units else None

    def estimate(self, device: str, job: Job, bf16: bool = True) -> float | None:
        """``per_iter``, or for a fused job not yet measured an upper bound: its K runs one after another."""
        rate = self.per_iter(device, job, bf16)
        if rate is None and len(job.entries) > 1 and (one := self.per_iter(device, Job(job.entries[:1]), bf16)):
            rate = one * len(job.entries)
        return rate
