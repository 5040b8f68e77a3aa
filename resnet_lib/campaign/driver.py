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

A call is one *worker*, and any number of workers may train one folder at once (issue #30): processes on
this machine (``--workers``, ``--devices``: ``workers``), array tasks on a Slurm cluster (``--slurm``: ``slurm``),
or calls started by hand. A worker trains a job only while it holds the job's OS file lock, which the kernel
releases when the worker ends in any way; a job another worker holds is skipped and tried again every
``poll_s`` (so a dead worker's job is taken up, from its checkpoint), and with nothing else left the call waits
for such jobs (``wait``) or leaves them to their workers. No job trains twice at once, so every run ends
bitwise as one worker would have trained it (``shared``).

Folder layout: ``DIR/campaign.json`` (the set, its options, the measured speeds and each call's log: its
worker, the iterations it trained of each job; every worker merges its part in, ``shared.SharedLog``),
``DIR/runs/<group>/<run slug>/`` (the engine's checkpoint and result files), ``DIR/locks/`` (a lock per job)
and ``DIR/workers/`` (each worker's status: its device and the jobs it trains now; ``--status`` reads them).

Sets (order = the order of work when time is short, issue #10):
  table6     in campaign.sets.TABLE6_PRECISION (fp32): one seed of ResNet-20/32/44/56/110, then
             plain-20/32/44/56/110 (Fig. 6, Fig. 7's plain-110), then the further seeds of the ResNets, depth by
             depth (Table 6's mean and spread);
  precision  ResNet-20's full recipe in fp32, then in bf16 autocast, every seed of each;
  smoke      ResNet-8 and plain-8 (with a quick warm-up), every seed of each: tiny, for tests and for
             checking a machine.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..base.device import pick_device
from ..base.io import device_name, ensure_writable_dir, utc_now
from ..base.precision import resolve
from ..data.cifar import load_cifar10
from ..engine.lanes import Lanes
from ..engine.loop import TrainingDiverged
from ..experiments.cifar_runs import cifar_trainer, run_cifar  # noqa: F401 (run_cifar: tests)
from .fused_runs import fused_trainer
from .progress import (  # noqa: F401 (API)
    WHY_STOPPED,
    format_summary,
    iteration_of,
    job_iteration,
    run_dir,
    summarize,
)
from .sets import (  # noqa: F401 (API)
    SETS,
    TABLE6_DEPTHS,
    TABLE6_PRECISION,
    Entry,
    Job,
    Speeds,
    campaign_entries,
    campaign_jobs,
    cost_units,
)
from .shared import STATE, JobClaims, SharedLog, failed_now, worker_id, write_status  # noqa: F401 (STATE: API)

# ----------------------------------------------------------------------------- the campaign

def _check_state(state: dict, want: dict, path: Path) -> None:
    older = {"fuse": True, "precision": TABLE6_PRECISION}  # what folders from before a key was kept trained with
    have = {k: state.get(k, older.get(k)) for k in want}
    if have != want:
        raise ValueError(f"{path} belongs to another campaign ({have}), not {want}. Continue it with its own "
                         "options, or give this campaign another --out folder.")


def campaign_want(name: str, seeds, scale: float, subset: int, test_subset: int, fuse: bool, precision: str) -> dict:
    """What a campaign folder is for (kept in ``campaign.json``): a call with other options is refused."""
    return {"name": name, "seeds": list(seeds), "scale": scale, "subset": subset, "test_subset": test_subset,
            "fuse": fuse, "precision": precision}


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
    """While entered (in the main thread): SIGINT and SIGTERM (and any of ``also``, e.g. Slurm's preemption signal)
    set ``requested`` instead of interrupting, so the caller stops between two steps; a second SIGINT raises
    KeyboardInterrupt as usual. ``reason``: "preempted" when the first was one of ``also``, else "interrupted"."""
    requested, signum = False, None

    def __init__(self, also=()):
        self.also = tuple(also)

    @property
    def reason(self) -> str:
        return "preempted" if self.signum in self.also else "interrupted"

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested, self.signum = True, self.signum or signum
        print(f"campaign: {signal.Signals(signum).name} received: stopping after this step, with checkpoints "
              "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self):
        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM, *self.also)
                        if signal.getsignal(s) is not signal.SIG_IGN}  # an ignored signal (nohup, &) stays so
        return self

    def __exit__(self, *exc):
        for s, h in (self.old or {}).items():
            signal.signal(s, h)


def run_campaign(name: str, out, budget_s: float, *, seeds=(1, 2, 3), scale: float = 1.0, subset: int = 0,
                 test_subset: int = 0, fuse: bool = True, together="auto", device="auto", data=None,
                 startup_s: float | None = None, margin_s: float | None = None, clock=time.monotonic,
                 progress: bool = True, log=print, only_started: bool = False, only=(), stop=None,
                 precision: str = TABLE6_PRECISION, wait: bool = True, poll_s: float = 2.0) -> dict:
    """Train campaign ``name`` in ``out`` for at most ``budget_s`` seconds (of ``clock``) and return its
    summary (``summarize``). Jobs start in order, ``together`` at a time (``lanes_for``), each advanced one
    step per round; ``margin_s`` before the budget ends, every run still training stops with a checkpoint,
    and a job is started only while ``startup_s`` (its set-up) is left. ``only_started``: only the jobs
    already begun; ``only``: only the jobs of these nets (e.g. ``("plain-20",)``). ``stop``, a
    :class:`StopRequest` (default: a new one, which Ctrl-C and SIGTERM set), ends the call early, the same
    way, once its ``requested`` is true. ``precision``: the policy the ``table6`` and ``smoke`` sets train in
    (default Table 6's; another policy's runs go to the group named after it).

    Other workers may train the same folder at once (``shared``): a job another worker holds is skipped and
    tried again every ``poll_s`` seconds; with nothing else left, this call ``wait``s for such jobs (taking one
    over, from its checkpoint, if its worker dies) until they end or the budget does, or (``wait=False``)
    leaves them to their workers."""
    t0 = clock()
    want = campaign_want(name, seeds, scale, subset, test_subset, fuse, precision)
    dev = pick_device(device)
    resolve(dev, precision)  # a policy this device cannot run fails here, before anything trains
    c = CampaignCall(name, Path(out), campaign_jobs(name, seeds, scale, subset, test_subset, fuse, precision), want, dev,
                     lanes_for(together, dev), budget_s, data, progress, log, only_started, only)
    startup = (3.0 if dev.type == "cuda" else 0.5) if startup_s is None else startup_s
    margin = max(5.0, 0.03 * budget_s) if margin_s is None else margin_s
    c.poll_s, t = poll_s, clock()
    try:
        with stop or StopRequest() as stop:
            while c.queue or c.lanes.live or c.waiting:
                left = budget_s - (t - t0) - margin
                if left <= 0 or stop.requested:
                    c.call["stopped"] = stop.reason if stop.requested else "budget"
                    break
                c.start_jobs(room=left > startup, now=t)
                if not c.lanes.live:
                    if not (c.waiting and wait and left > startup):
                        break
                    time.sleep(poll_s)  # every job left is another worker's now: wait to see it end (or its worker die)
                    t = clock()
                    continue
                t = c.round(clock, t)
            c.call["stopped"] = c.call["stopped"] or ("budget" if c.queue else "left to others" if c.waiting
                                                      else "finished")  # queue: too little left to start a job
            return c.close(clock() - t0)
    finally:
        c.claims.release_all()  # an error too: the process may live on, and its jobs must not stay held


class CampaignCall:
    """One call of a campaign: its queue of jobs, the lanes training some of them, the jobs it holds (one lock
    each, ``shared.JobClaims``), the measured speeds and the state file (``campaign.json``, shared with any
    other worker: ``shared.SharedLog``), kept up to date as jobs end."""

    def __init__(self, name: str, out: Path, jobs: list[Job], want: dict, dev: torch.device, n_lanes: int,
                 budget_s: float, data, progress: bool, log, only_started: bool = False, only=()):
        self.name, self.out, self.jobs, self.dev, self.n_lanes, self.data, self.log = \
            name, out, jobs, dev, n_lanes, data, log
        nets = {j.runs[0].name for j in jobs}
        only = [{n.lower(): n for n in nets}.get(o.lower(), o) for o in only]  # resnet-56 is ResNet-56
        if set(only) - nets:
            raise ValueError(f"campaign {name} has no net {sorted(set(only) - nets)}; its nets: {sorted(nets)}")
        ensure_writable_dir(out, fix="choose another --out folder")
        self.dev_name, self.worker = device_name(dev), worker_id()
        self.call = {"device": self.dev_name, "torch": str(torch.__version__), "budget_s": budget_s,
                     "together": n_lanes, "started_utc": utc_now(), "iterations": 0, "worker": self.worker,
                     "jobs": {},  # job key -> [iteration it started from here, iteration reached]
                     "stopped": None}  # until the call ends: None in the log means it was killed
        self.shared = SharedLog(out, want, _check_state)
        state = self.shared.open(self.call)
        self.speeds = Speeds(state["speeds"])
        self.failed = state.get("failed", {})  # job key -> why it stopped (diverged): not retried
        at = {j.key: job_iteration(out, j) for j in jobs}
        self.bar = tqdm(total=sum(j.iters * len(j.entries) for j in jobs),  # run-iterations: K a fused step
                        initial=sum(at[j.key] * len(j.entries) for j in jobs), desc=f"campaign {name}", unit="it",
                        disable=not progress, dynamic_ncols=True)
        self.queue = [j for j in jobs if at[j.key] < j.iters and j.key not in self.failed
                      and (at[j.key] > 0 or not only_started) and (not only or j.runs[0].name in only)]
        self.order = {j.key: i for i, j in enumerate(jobs)}
        self.waiting: list[Job] = []  # jobs another worker holds: tried again every poll_s
        self.claims, self.lanes = JobClaims(out), Lanes(dev)
        self.last_save = self.last_status = self.retried = None
        self.status()

    def start_jobs(self, room: bool, now: float = 0.0) -> None:
        """Fill free lanes with the next jobs in the queue (while there is ``room`` in the budget) that no other
        worker holds; those held are tried again every ``poll_s`` (their worker may have ended or died)."""
        if self.waiting and (self.retried is None or now - self.retried >= self.poll_s):
            self.queue = sorted([*self.waiting, *self.queue], key=lambda j: self.order[j.key])
            self.waiting, self.retried = [], now
        started = False
        while self.queue and len(self.lanes.live) < self.n_lanes and room:
            job = self.queue.pop(0)
            if not self.claims.claim(job.key):
                self.waiting.append(job)
                continue
            trainer = None if job.key in failed_now(self.out) else self._trainer(job)
            if trainer is None:  # finished meanwhile (by another worker, or by hand), or set aside by another
                self.claims.release(job.key)
                continue
            trainer.extra["trained_together"] = self.n_lanes  # the most runs at once (--together) in its last call
            k = getattr(trainer, "k", 1)  # a FusedTrainer's runs, else 1 (a run alone, maybe part of a job)
            self.lanes.add(job.key, trainer, job=job, k=k, at=trainer.state.iteration,
                           **{"as": job if k == len(job.entries) else Job(job.entries[:1])})
            self.call["jobs"].setdefault(job.key, [trainer.state.iteration, trainer.state.iteration])
            started = True
        if started or (self.waiting and not self.lanes.live):  # waiting: the display says for what
            self.status()

    def _trainer(self, job: Job):
        self.data = self.data or load_cifar10()
        return job_trainer(job, self.out, self.dev, self.data)

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
            self.call["jobs"][lane.key][1] = lane.meta["at"] = it
        if ended or self.last_save is None or now - self.last_save > 60:
            self.last_save = now
            self.save()
        if ended or self.last_status is None or now - self.last_status > 5:
            self.last_status = now
            self.status()
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
            self.claims.release(lane.key)
            if self.log:
                self.log(f"campaign {self.name}: {lane.meta['job'].label} stopped: {self.failed[lane.key]}")
        elif lane.trainer.complete:
            self.lanes.finish(lane)
            self.claims.release(lane.key)
        else:  # a planned stop (runs with the warm-up, before they are fused): the job's next part, still held
            self.lanes.settle(lane)
            self.queue.insert(0, lane.meta["job"])

    def save(self) -> None:
        state = self.shared.save(self.call, self.speeds.table, self.failed)
        self.speeds.table, self.failed = state["speeds"], state["failed"]  # every worker's, from now on

    def status(self) -> None:
        """This worker's status file: where it runs, the jobs it trains now and how far each has got."""
        jobs = [{"key": lane.key, "label": lane.meta["job"].label, "iteration": lane.trainer.state.iteration,
                 "iters": lane.meta["job"].iters} for lane in self.lanes.live]
        write_status(self.out, self.worker, {"campaign": self.name, "device": self.dev_name, "jobs": jobs,
                                             "waiting_for": [j.key for j in self.waiting],
                                             "stopped": self.call["stopped"]})

    def close(self, seconds: float) -> dict:
        """Stop every run still training (each with a checkpoint), record the call, summarize."""
        self.lanes.stop_all()
        self.claims.release_all()
        self.bar.close()
        self.call["seconds"] = round(seconds, 1)
        self.save()
        self.status()
        at = {j.key: job_iteration(self.out, j) for j in self.jobs}
        summary = {**summarize(self.jobs, at, self.speeds, self.dev_name), "failed": dict(self.failed),
                   "stopped": self.call["stopped"]}
        if self.log:
            self.log(format_summary(self.name, summary, self.call))
        return summary
