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
alone. ResNet-110's seeds warm up alone (each warm-up ends at its own iteration) and are fused after it
(``fused_runs``).

Ctrl-C (or SIGTERM) asks for a stop: the runs in training stop after their current step, each with a
checkpoint, and the call is recorded as interrupted; a second Ctrl-C stops at once (losing what was
trained since each run's last checkpoint). ``--only-started`` finishes the runs in progress and starts no
new one (for an hour on a slower machine); ``--only plain-20`` trains only the named nets' runs (a net that
is quick on a CPU, while a GPU has the rest).

Folder layout: ``DIR/campaign.json`` (the set, its options, the measured speeds and each call's
log) and ``DIR/runs/<group>/<run slug>/`` (the engine's checkpoint and result files).

Sets (order = the order of work when time is short, issue #10):
  table6     in campaign.sets.TABLE6_PRECISION (fp32): one seed of ResNet-20/32/44/56/110, then
             plain-20/32/44/56/110 (Fig. 6, Fig. 7's plain-110), then the further seeds of the ResNets, depth by
             depth (Table 6's mean and spread);
  precision  ResNet-20's full recipe in fp32, then in bf16 autocast, every seed of each;
  smoke      ResNet-8 and plain-8 (with a quick warm-up), every seed of each: tiny, for tests and for
             checking a machine.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..base.device import pick_device
from ..base.io import atomic_write_json, utc_now
from ..base.precision import POLICIES, resolve
from ..data.cifar import load_cifar10
from ..engine.checkpoint import CHECKPOINT, RESULT
from ..engine.lanes import Lanes
from ..engine.loop import TrainingDiverged
from ..experiments.cifar_runs import cifar_trainer, run_cifar  # noqa: F401 (run_cifar: tests)
from ..experiments.shipped import export_campaign
from .fused_runs import fused_slug, fused_trainer
from .sets import (  # noqa: F401 (API)
    SETS,
    TABLE6_DEPTHS,
    TABLE6_PRECISION,
    Entry,
    Job,
    Speeds,
    campaign_device,
    campaign_entries,
    campaign_jobs,
    cost_units,
)

STATE = "campaign.json"
WHY_STOPPED = {"budget": "stopped by its budget", "interrupted": "interrupted; the same command continues",
               "finished": "nothing more to do", None: "killed before it could stop"}
# ----------------------------------------------------------------------------- progress and speed

def run_dir(out: Path, e: Entry) -> Path:
    return Path(out) / "runs" / e.group / e.run.slug


def _checkpoint_state(path: Path, what: str) -> dict:
    try:  # the checkpoint holds only tensors and plain containers: no pickle needed to read it
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)["state"]
    except Exception as err:  # a damaged checkpoint: the engine's own check on resume names the fix
        raise ValueError(f"cannot read the checkpoint of {what} at {path} ({err}); delete it to retrain "
                         "from the start") from err


def _checkpoint_iteration(path: Path, what: str) -> int:
    return int(_checkpoint_state(path, what)["iteration"])


def iteration_of(out: Path, e: Entry) -> int:
    """How far a run has got: its iterations when finished, its checkpoint's iteration, else 0."""
    d = run_dir(out, e)
    if (d / RESULT).exists():
        return e.run.train.iters
    if (d / CHECKPOINT).exists():
        return _checkpoint_iteration(d / CHECKPOINT, e.label)
    return 0


def _job_checkpoint(out: Path, job: Job) -> Path | None:
    """The checkpoint a job trains on from: as ``run_fused`` sees it, the runs not finished go on from the
    fused checkpoint, else (before it, or alone) from their own, the least advanced one's. None: none yet."""
    todo = [e for e in job.entries if not (run_dir(out, e) / RESULT).exists()]
    path = Path(out) / "runs" / job.group / fused_slug([e.run for e in todo]) / CHECKPOINT if todo else None
    if len(todo) > 1 and path.exists():
        return path
    own = [run_dir(out, e) / CHECKPOINT for e in todo]
    if not own or not all(p.exists() for p in own):
        return None  # a run not started yet: the job starts from 0
    return min(own, key=lambda p: _checkpoint_iteration(p, job.label))


def job_iteration(out: Path, job: Job) -> int:
    """How far a job has got: its iterations when all its runs finished, else its checkpoint's iteration
    (``_job_checkpoint``), else 0."""
    todo = [e for e in job.entries if not (run_dir(out, e) / RESULT).exists()]
    if not todo:
        return job.iters
    path = _job_checkpoint(out, job)
    return _checkpoint_iteration(path, job.label) if path else 0


# ----------------------------------------------------------------------------- the campaign

def _check_state(state: dict, want: dict, path: Path) -> None:
    older = {"fuse": True, "precision": TABLE6_PRECISION}  # what folders from before a key was kept trained with
    have = {k: state.get(k, older.get(k)) for k in want}
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


class StopRequest:
    """While entered (in the main thread): SIGINT and SIGTERM set ``requested`` instead of interrupting, so
    the caller stops between two steps; a second SIGINT raises KeyboardInterrupt as usual."""
    requested = False

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print(f"campaign: {signal.Signals(signum).name} received: stopping after this step, with checkpoints "
              "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self):
        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)
                        if signal.getsignal(s) is not signal.SIG_IGN}  # an ignored signal (nohup, &) stays so
        return self

    def __exit__(self, *exc):
        for s, h in (self.old or {}).items():
            signal.signal(s, h)


def run_campaign(name: str, out, budget_s: float, *, seeds=(1, 2, 3), scale: float = 1.0, subset: int = 0,
                 test_subset: int = 0, fuse: bool = True, together="auto", device="auto", data=None,
                 startup_s: float | None = None, margin_s: float | None = None, clock=time.monotonic,
                 progress: bool = True, log=print, only_started: bool = False, only=(), stop=None,
                 precision: str = TABLE6_PRECISION) -> dict:
    """Train campaign ``name`` in ``out`` for at most ``budget_s`` seconds (of ``clock``) and return its
    summary (``summarize``). Jobs start in order, ``together`` at a time (``lanes_for``), each advanced one
    step per round; ``margin_s`` before the budget ends, every run still training stops with a checkpoint,
    and a job is started only while ``startup_s`` (its set-up) is left. ``only_started``: only the jobs
    already begun; ``only``: only the jobs of these nets (e.g. ``("plain-20",)``). ``stop``, a
    :class:`StopRequest` (default: a new one, which Ctrl-C and SIGTERM set), ends the call early, the same
    way, once its ``requested`` is true. ``precision``: the policy the ``table6`` and ``smoke`` sets train in
    (default Table 6's; another policy's runs go to the group named after it)."""
    t0 = clock()
    want = {"name": name, "seeds": list(seeds), "scale": scale, "subset": subset, "test_subset": test_subset,
            "fuse": fuse, "precision": precision}
    dev = pick_device(device)
    resolve(dev, precision)  # a policy this device cannot run fails here, before anything trains
    c = CampaignCall(name, Path(out), campaign_jobs(name, seeds, scale, subset, test_subset, fuse, precision), want, dev,
                     lanes_for(together, dev), budget_s, data, progress, log, only_started, only)
    startup = (3.0 if dev.type == "cuda" else 0.5) if startup_s is None else startup_s
    margin = max(5.0, 0.03 * budget_s) if margin_s is None else margin_s
    t = clock()
    with stop or StopRequest() as stop:
        while c.queue or c.lanes.live:
            left = budget_s - (t - t0) - margin
            if left <= 0 or stop.requested:
                c.call["stopped"] = "interrupted" if stop.requested else "budget"
                break
            c.start_jobs(room=left > startup)
            if not c.lanes.live:
                break
            t = c.round(clock, t)
        c.call["stopped"] = c.call["stopped"] or "finished"
        return c.close(clock() - t0)


class CampaignCall:
    """One call of a campaign: its queue of jobs, the lanes training some of them, the measured speeds and
    the state file (``campaign.json``), kept up to date as jobs end."""

    def __init__(self, name: str, out: Path, jobs: list[Job], want: dict, dev: torch.device, n_lanes: int,
                 budget_s: float, data, progress: bool, log, only_started: bool = False, only=()):
        self.name, self.out, self.jobs, self.dev, self.n_lanes, self.data, self.log = \
            name, out, jobs, dev, n_lanes, data, log
        nets = {j.runs[0].name for j in jobs}
        only = [{n.lower(): n for n in nets}.get(o.lower(), o) for o in only]  # resnet-56 is ResNet-56
        if set(only) - nets:
            raise ValueError(f"campaign {name} has no net {sorted(set(only) - nets)}; its nets: {sorted(nets)}")
        self.state_path = out / STATE
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else \
            {**want, "speeds": {}, "calls": []}
        _check_state(self.state, want, self.state_path)
        self.dev_name = campaign_device(dev)
        self.speeds = Speeds(self.state["speeds"])
        self.failed = self.state.setdefault("failed", {})  # job key -> why it stopped (diverged): not retried
        at = {j.key: job_iteration(out, j) for j in jobs}
        self.call = {"device": self.dev_name, "torch": str(torch.__version__), "budget_s": budget_s,
                     "together": n_lanes, "started_utc": utc_now(), "iterations": 0,
                     "stopped": None}  # until the call ends: None in the log means it was killed
        self.state["calls"].append(self.call)
        self.bar = tqdm(total=sum(j.iters * len(j.entries) for j in jobs),  # run-iterations: K a fused step
                        initial=sum(at[j.key] * len(j.entries) for j in jobs), desc=f"campaign {name}", unit="it",
                        disable=not progress, dynamic_ncols=True)
        self.queue = [j for j in jobs if at[j.key] < j.iters and j.key not in self.failed
                      and (at[j.key] > 0 or not only_started) and (not only or j.runs[0].name in only)]
        self.lanes = Lanes(dev)
        self.last_save = None

    def start_jobs(self, room: bool) -> None:
        """Fill free lanes with the next jobs in the queue (while there is ``room`` in the budget)."""
        while self.queue and len(self.lanes.live) < self.n_lanes and room:
            job = self.queue.pop(0)
            self.data = self.data or load_cifar10()
            trainer = job_trainer(job, self.out, self.dev, self.data)
            if trainer is None:  # finished meanwhile (e.g. by hand): nothing to train
                continue
            trainer.extra["trained_together"] = self.n_lanes  # the most runs at once (--together) in its last call
            k = getattr(trainer, "k", 1)  # a FusedTrainer's runs, else 1 (a run alone, maybe part of a job)
            self.lanes.add(job.key, trainer, job=job, k=k, at=trainer.state.iteration,
                           **{"as": job if k == len(job.entries) else Job(job.entries[:1])})

    def round(self, clock, t: float) -> float:
        """One step of every lane; then the lanes that ended are finished (or their job requeued, or set
        aside), and the round's time is shared out to the speeds by each run's cost. Returns the time."""
        units = {lane.key: cost_units(lane.meta["job"]) * lane.meta["k"] for lane in self.lanes.live}
        ended = self.lanes.advance()
        for lane in ended:
            self._ended(lane)
        now = clock()
        share = (now - t) / sum(units.values())
        for lane in [*self.lanes.live, *ended]:
            it = lane.trainer.state.iteration
            self.speeds.add(self.dev_name, lane.meta["as"], it - lane.meta["at"], share * units[lane.key])
            self.bar.update((it - lane.meta["at"]) * lane.meta["k"])
            self.call["iterations"] += it - lane.meta["at"]
            lane.meta["at"] = it
        if ended or self.last_save is None or now - self.last_save > 60:
            self.last_save = now
            self.save()
        return now

    def _ended(self, lane) -> None:
        if lane.error is not None and not isinstance(lane.error, TrainingDiverged):
            self.lanes.stop_all()  # the others keep what they trained; then the error, as it is
            self.call["stopped"] = f"error: {type(lane.error).__name__}"
            self.save()
            raise lane.error
        if lane.error is not None:  # diverged: the others go on; this job is left as it stands, with the reason
            self.lanes.settle(lane)
            self.failed[lane.key] = f"{type(lane.error).__name__}: {lane.error}"
            if self.log:
                self.log(f"campaign {self.name}: {lane.meta['job'].label} stopped: {self.failed[lane.key]}")
        elif lane.trainer.complete:
            self.lanes.finish(lane)
        else:  # a planned stop (runs with the warm-up, before they are fused): the job's next part
            self.lanes.settle(lane)
            self.queue.insert(0, lane.meta["job"])

    def save(self) -> None:
        self.state["speeds"] = self.speeds.table
        atomic_write_json(self.state_path, self.state)

    def close(self, seconds: float) -> dict:
        """Stop every run still training (each with a checkpoint), record the call, summarize."""
        self.lanes.stop_all()
        self.bar.close()
        self.call["seconds"] = round(seconds, 1)
        self.save()
        at = {j.key: job_iteration(self.out, j) for j in self.jobs}
        summary = {**summarize(self.jobs, at, self.speeds, self.dev_name), "failed": dict(self.failed),
                   "stopped": self.call["stopped"]}
        if self.log:
            self.log(format_summary(self.name, summary, self.call))
        return summary


def summarize(jobs: list[Job], at: dict, speeds: Speeds, dev_name: str) -> dict:
    """Which runs are done, in progress (with their iteration) and left, and the time still needed on
    ``dev_name`` at the speed measured there in each job's precision policy; None where nothing was measured
    so yet. A fused job's time is shared out equally between its runs."""
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
                    f"{WHY_STOPPED.get(call['stopped'], call['stopped'])})"
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
    ap.add_argument("--only-started", action="store_true", help="finish the runs in progress; start no new one")
    ap.add_argument("--only", default="", help="train only these nets, comma-separated, e.g. plain-20,plain-32 (any case)")
    ap.add_argument("--precision", default=TABLE6_PRECISION, choices=list(POLICIES),
                    help="the policy table6 and smoke train in (default %(default)s, Table 6's: the precision study's "
                         "choice, docs/precision.md); another policy's runs are kept in a group named after it")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--export", default=None, metavar="DEST", help="then export the finished runs into DEST "
                    "(results/cifar10: JSON per run, Fig. 7 responses, fp16 weights)")
    a = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds takes comma-separated integers, e.g. 1,2,3; got {a.seeds!r}")
    summary = run_campaign(a.name, a.out, a.budget_s, seeds=seeds, scale=a.scale, subset=a.subset,
                           test_subset=a.test_subset, fuse=not a.no_fuse, together=a.together, device=a.device,
                           only_started=a.only_started, only=tuple(n.strip() for n in a.only.split(",") if n.strip()),
                           precision=a.precision)
    if summary["stopped"] == "interrupted":
        return 130  # as a shell reports Ctrl-C; no export
    if a.export:
        written = export_campaign(a.out, a.export, device=a.device)
        print(f"exported {len(written['runs'])} finished runs into {a.export}")
    return 0
