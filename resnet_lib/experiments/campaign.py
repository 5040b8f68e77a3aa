"""A campaign: a named set of Section 4.2 runs trained within a time budget, resumable anywhere (issue #10).

GPU time comes in pieces (calls of a few minutes, on whichever machine is lent), so a campaign trains
until its budget is nearly spent, then stops every run it is training with a checkpoint (the engine's
``Trainer.stop``, between two steps). Called again with the same folder, on this machine or another, it
continues from the checkpoints, so every run ends bitwise where it would have ended uninterrupted (the
engine's resume contract; a CPU test checks it for a whole campaign).

On a GPU several jobs train at once (``--together``, 4 by default), each replaying its own CUDA graph
on its own stream (``engine.lanes``): one CIFAR step leaves the GPU mostly waiting, so nets of different
depths share it. Jobs start in the order of work below, a new one whenever one ends.

Further seeds of one net train together as one *job*: K seeds fused into one wide net
(``fused_runs.run_fused``, issue #10 part 1), which on a GPU costs far less than K runs one after
another. A fused job checkpoints in ``runs/<group>/fused_<...>/`` while it trains and, when it ends,
writes each run's own folder exactly as a run trained alone would have. ``--no-fuse`` trains every run
alone. ResNet-110's seeds (the warm-up) train alone to 2,000 iterations and are fused there.

Folder layout: ``DIR/campaign.json`` (the set, its options, the measured speeds and each call's
log) and ``DIR/runs/<group>/<run slug>/`` (the engine's checkpoint and result files).

Sets (order = the order of work when time is short, issue #10):
  table6     one seed of ResNet-20/32/44/56/110, then plain-20/32/44/56/110 (Fig. 6, Fig. 7's
             plain-110), then the further seeds of the ResNets, depth by depth (Table 6's mean and spread);
  precision  ResNet-20 in fp32, then in bf16 autocast, every seed of each (part 5 of the issue);
  smoke      ResNet-8 and plain-8 (with a quick warm-up), every seed of each: tiny, for tests and for
             checking a machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..base.device import pick_device
from ..base.io import atomic_write_json, device_name
from ..data.cifar import load_cifar10
from ..engine.checkpoint import CHECKPOINT, RESULT
from ..engine.lanes import Lanes
from ..engine.loop import TrainingDiverged
from .cifar_runs import CifarRun, cifar_trainer, paper_recipe, run_cifar  # noqa: F401 (run_cifar: tests)
from .fused_runs import fused_slug, fused_trainer
from .shipped import export_campaign

STATE = "campaign.json"
TABLE6_DEPTHS = (20, 32, 44, 56, 110)


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
        jobs = [Job((Entry(mk(d, res, first)),)) for res in (True, False) for d in TABLE6_DEPTHS]
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


# ----------------------------------------------------------------------------- progress and speed

def run_dir(out: Path, e: Entry) -> Path:
    return Path(out) / "runs" / e.group / e.run.slug


def _checkpoint_iteration(path: Path, what: str) -> int:
    try:  # the checkpoint holds only tensors and plain containers: no pickle needed to read it
        return int(torch.load(path, map_location="cpu", weights_only=True)["state"]["iteration"])
    except Exception as err:  # a damaged checkpoint: the engine's own check on resume names the fix
        raise ValueError(f"cannot read the checkpoint of {what} at {path} ({err}); delete it to retrain "
                         "from the start") from err


def iteration_of(out: Path, e: Entry) -> int:
    """How far a run has got: its iterations when finished, its checkpoint's iteration, else 0."""
    d = run_dir(out, e)
    if (d / RESULT).exists():
        return e.run.train.iters
    if (d / CHECKPOINT).exists():
        return _checkpoint_iteration(d / CHECKPOINT, e.label)
    return 0


def job_iteration(out: Path, job: Job) -> int:
    """How far a job has got: as ``run_fused`` sees it, the runs not finished train on from the fused
    checkpoint, else (before it, or alone) from their own: the least advanced counts."""
    todo = [e for e in job.entries if not (run_dir(out, e) / RESULT).exists()]
    if not todo:
        return job.iters
    path = Path(out) / "runs" / job.group / fused_slug([e.run for e in todo]) / CHECKPOINT
    if len(todo) > 1 and path.exists():
        return _checkpoint_iteration(path, job.label)
    return min(iteration_of(out, e) for e in todo)


def _cost_units(job: Job) -> float:
    """Relative cost of one iteration: proportional to depth (ms per iteration on an H200, issue #10:
    2.42 / 13.2 for 20 / 110 layers, 5.45x for 5.5x the depth); fused jobs have speeds of their own."""
    run = job.entries[0].run
    return run.depth * run.train.batch_size / 128


def speed_key(device: str, job: Job) -> str:
    k = len(job.entries)
    return device if k == 1 else f"{device} | {k} fused"


class Speeds:
    """Seconds per cost unit measured on each device (and for each number of fused seeds), so that chunks
    can be sized before they run."""

    def __init__(self, table: dict | None = None):
        self.table = table or {}  # speed key -> [cost units trained, seconds]

    def add(self, device: str, job: Job, iters: int, seconds: float) -> None:
        key = speed_key(device, job)
        units, secs = self.table.get(key, [0.0, 0.0])
        self.table[key] = [units + iters * _cost_units(job), secs + seconds]

    def per_iter(self, device: str, job: Job) -> float | None:
        units, secs = self.table.get(speed_key(device, job), [0.0, 0.0])
        return secs / units * _cost_units(job) if units else None

    def estimate(self, device: str, job: Job) -> float | None:
        """``per_iter``, or for a fused job not yet measured an upper bound: its K runs one after another."""
        rate = self.per_iter(device, job)
        if rate is None and len(job.entries) > 1 and (one := self.per_iter(device, Job(job.entries[:1]))):
            rate = one * len(job.entries)
        return rate


# ----------------------------------------------------------------------------- the campaign

def _check_state(state: dict, want: dict, path: Path) -> None:
    have = {k: state.get(k, True if k == "fuse" else None) for k in want}  # fuse: older folders fused
    if have != want:
        raise ValueError(f"{path} belongs to another campaign ({have}), not {want}. Continue it with its own "
                         "options, or give this campaign another --out folder.")


def lanes_for(together, dev: torch.device) -> int:
    """How many runs train at once: ``together`` "auto" means 4 on a GPU (each on its own CUDA stream,
    ``engine.lanes``) and 1 on a CPU (where running several at once gains nothing)."""
    if together == "auto":
        return 4 if dev.type == "cuda" else 1
    n = int(together)
    if n < 1:
        raise ValueError(f"together must be 'auto' or a positive number of runs, got {together!r}")
    return n


def job_trainer(job: Job, out: Path, dev, data):
    """The job's prepared ``Trainer`` (resumed where it stopped), or None when all its runs are finished."""
    root = Path(out) / "runs" / job.group
    t = cifar_trainer(job.runs[0], root, dev, progress=False, data=data) if len(job.entries) == 1 else \
        fused_trainer(job.runs, root, dev, progress=False, data=data)
    return None if isinstance(t, (dict, list)) else t


def run_campaign(name: str, out, budget_s: float, *, seeds=(1, 2, 3), scale: float = 1.0, subset: int = 0,
                 test_subset: int = 0, fuse: bool = True, together="auto", device="auto", data=None,
                 startup_s: float | None = None, margin_s: float | None = None, clock=time.monotonic,
                 progress: bool = True, log=print) -> dict:
    """Train campaign ``name`` in ``out`` for at most ``budget_s`` seconds (of ``clock``) and return its
    summary (``summarize``). Jobs start in order, ``together`` at a time (``lanes_for``), each advanced one
    step per round; ``margin_s`` before the budget ends, every run still training stops with a checkpoint,
    and a job is started only while ``startup_s`` (its set-up) is left."""
    t0 = clock()
    out = Path(out)
    jobs = campaign_jobs(name, seeds, scale, subset, test_subset, fuse)
    want = {"name": name, "seeds": list(seeds), "scale": scale, "subset": subset, "test_subset": test_subset,
            "fuse": fuse}
    state_path = out / STATE
    state = json.loads(state_path.read_text()) if state_path.exists() else {**want, "speeds": {}, "calls": []}
    _check_state(state, want, state_path)
    dev = pick_device(device)
    dev_name = device_name(dev)
    n_lanes = lanes_for(together, dev)
    speeds = Speeds(state["speeds"])
    startup = (3.0 if dev.type == "cuda" else 0.5) if startup_s is None else startup_s
    margin = max(5.0, 0.03 * budget_s) if margin_s is None else margin_s
    at = {j.key: job_iteration(out, j) for j in jobs}
    call = {"device": dev_name, "budget_s": budget_s, "together": n_lanes,
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "iterations": 0, "stopped": "finished"}
    state["calls"].append(call)
    total = sum(j.iters * len(j.entries) for j in jobs)  # run-iterations: a fused step advances K runs
    bar = tqdm(total=total, initial=sum(at[j.key] * len(j.entries) for j in jobs), desc=f"campaign {name}",
               unit="it", disable=not progress, dynamic_ncols=True)
    failed = state.setdefault("failed", {})  # job key -> why it stopped (a run that diverged): not retried
    queue = [j for j in jobs if at[j.key] < j.iters and j.key not in failed]
    lanes = Lanes(dev)
    last_save = t = clock()
    while queue or lanes.live:
        left = budget_s - (t - t0) - margin
        if left <= 0:
            call["stopped"] = "budget"
            break
        while queue and len(lanes.live) < n_lanes and left > startup:
            job = queue.pop(0)
            data = data or load_cifar10()
            trainer = job_trainer(job, out, dev, data)
            if trainer is None:  # finished meanwhile (e.g. by hand): nothing to train
                at[job.key] = job.iters
                continue
            trainer.extra["trained_together"] = n_lanes  # the most runs at once (--together) in its last call
            k = getattr(trainer, "k", 1)  # a FusedTrainer's runs, else 1 (a run alone, maybe part of a job)
            lanes.add(job.key, trainer, job=job, k=k, at=trainer.state.iteration,
                      **{"as": job if k == len(job.entries) else Job(job.entries[:1])})
        if not lanes.live:
            break
        units = {lane.key: _cost_units(lane.meta["job"]) * lane.meta["k"] for lane in lanes.live}
        ended = lanes.advance()
        for lane in ended:
            if lane.error is not None and not isinstance(lane.error, TrainingDiverged):
                lanes.stop_all()  # the others keep what they trained; then the error, as it is
                atomic_write_json(state_path, state)
                raise lane.error
            if lane.error is not None:  # diverged: the others go on; this job is left as it stands, with the reason
                lanes.settle(lane)
                failed[lane.key] = f"{type(lane.error).__name__}: {lane.error}"
                if log:
                    log(f"campaign {name}: {lane.meta['job'].label} stopped: {failed[lane.key]}")
            elif lane.trainer.complete:
                lanes.finish(lane)
            else:  # a planned stop (runs with the warm-up, before they are fused): the job's next part
                lanes.settle(lane)
                queue.insert(0, lane.meta["job"])
        now = clock()
        share = (now - t) / sum(units.values())  # the round's time, shared out by each run's cost
        for lane in [*lanes.live, *ended]:
            it = lane.trainer.state.iteration
            speeds.add(dev_name, lane.meta["as"], it - lane.meta["at"], share * units[lane.key])
            bar.update((it - lane.meta["at"]) * lane.meta["k"])
            call["iterations"] += it - lane.meta["at"]
            lane.meta["at"] = it
        t = now
        if ended or now - last_save > 60:
            state["speeds"], last_save = speeds.table, now
            atomic_write_json(state_path, state)
    lanes.stop_all()  # the budget: each run stops with a checkpoint, resumable from there
    at = {j.key: job_iteration(out, j) for j in jobs}
    bar.close()
    call["seconds"] = round(clock() - t0, 1)
    state["speeds"] = speeds.table
    atomic_write_json(state_path, state)
    summary = {**summarize(jobs, at, speeds, dev_name), "failed": dict(failed)}
    if log:
        log(format_summary(name, summary, call))
    return summary


def summarize(jobs: list[Job], at: dict, speeds: Speeds, dev_name: str) -> dict:
    """Which runs are done, in progress (with their iteration) and left, and the time still needed on
    ``dev_name`` at the speed measured there (None where nothing was measured on it yet). A fused job's
    time is shared out equally between its runs."""
    rows, left_s = [], 0.0
    for job in jobs:
        it, iters = at[job.key], job.iters
        rate = speeds.estimate(dev_name, job)
        need = None if rate is None else (iters - it) * rate
        left_s = None if (need is None and it < iters) or left_s is None else left_s + (need or 0)
        for e in job.entries:
            rows.append({"run": e.label, "key": e.key, "job": job.label, "iteration": it, "iters": iters,
                         "status": "done" if it >= iters else ("in progress" if it else "left"),
                         "time_left_s": None if need is None else need / len(job.entries)})
    count = {s: sum(r["status"] == s for r in rows) for s in ("done", "in progress", "left")}
    return {"rows": rows, "count": count, "time_left_s": left_s, "device": dev_name}


def format_summary(name: str, summary: dict, call: dict | None = None) -> str:
    c = summary["count"]
    lines = [f"campaign {name}: {c['done']} done, {c['in progress']} in progress, {c['left']} left"]
    if call:
        lines[0] += f" (this call: {call['iterations']} iterations in {call.get('seconds', 0):.0f} s, " \
                    f"{'stopped by its budget' if call['stopped'] == 'budget' else 'nothing more to do'})"
    for r in summary["rows"]:
        est = "" if r["time_left_s"] in (None, 0) else f"  ~{r['time_left_s'] / 60:.1f} min left"
        fused = " (fused)" if r["job"].endswith("(fused)") else ""
        lines.append(f"  {r['status']:11s} {r['run'] + fused:28s} {r['iteration']:>6d}/{r['iters']}{est}")
    t = summary["time_left_s"]
    for key, why in summary.get("failed", {}).items():
        lines.append(f"  failed      {key}: {why}\n    (not retried; to retry, remove it from \"failed\" in campaign.json)")
    lines.append(f"time still needed on {summary['device']}: " +
                 ("unknown (no speed measured on this device yet)" if t is None else f"~{t / 60:.1f} min"))
    return "\n".join(lines)


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m resnet_lib campaign", description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=SETS)
    ap.add_argument("--out", required=True, help="the campaign's folder (created, or continued)")
    ap.add_argument("--budget-s", type=float, default=0, help="seconds this call may train (0: only summarize "
                    "or export)")
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (the first for every net)")
    ap.add_argument("--scale", type=float, default=1.0, help="scale the 64k-iteration schedule (tiny tests)")
    ap.add_argument("--subset", type=int, default=0, help="stratified training subset (0: all 50k images)")
    ap.add_argument("--test-subset", type=int, default=0, help="curve points on this many test images (0: all)")
    ap.add_argument("--no-fuse", action="store_true", help="train every run alone (default: the further seeds "
                    "of each net train together, fused into one net; a folder keeps the choice it started with)")
    ap.add_argument("--together", default="auto", help="runs trained at once, each on its own CUDA stream "
                    "(auto: 4 on a GPU, 1 on a CPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--export", default=None, metavar="DEST", help="then export the finished runs into DEST "
                    "(results/cifar10: JSON per run, Fig. 7 responses, fp16 weights)")
    a = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds takes comma-separated integers, e.g. 1,2,3; got {a.seeds!r}")
    run_campaign(a.name, a.out, a.budget_s, seeds=seeds, scale=a.scale, subset=a.subset, test_subset=a.test_subset,
                 fuse=not a.no_fuse, together=a.together, device=a.device)
    if a.export:
        written = export_campaign(a.out, a.export, device=a.device)
        print(f"exported {len(written['runs'])} finished runs into {a.export}")
    return 0
