"""Where a campaign stands, read from its folder alone: how far each run and job has got (their checkpoints
and results), what is done, in progress and left, and the time still needed (issue #10). The driver, the
workers' display and ``--status`` all read it the same way, so several workers on one folder agree."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..base.errors import UserError
from ..engine.checkpoint import CHECKPOINT, RESULT
from .fused_runs import fused_slug
from .sets import TABLE6_PRECISION, Entry, Job, Speeds, campaign_jobs
from .shared import STATE, JobClaims, read_statuses

WHY_STOPPED = {"budget": "stopped by its budget", "interrupted": "interrupted; the same command continues",
               "preempted": "preempted (Slurm's signal): stopped with checkpoints, requeued",
               "left to others": "the jobs left are other workers' now", "finished": "nothing more to do",
               None: "killed before it could stop"}

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


# ----------------------------------------------------------------------------- --status: the folder as it stands

def campaign_status(name: str, out, now: float | None = None) -> str:
    """Where campaign ``name`` in ``out`` stands, read from the folder alone (nothing trains, nothing is submitted):
    each run of the set the folder was started with (its options are in ``campaign.json``), with "training" where
    a worker holds its job now (its lock, ``shared.JobClaims``); the time still needed, for one worker and for
    those training now; each worker's status; the Slurm arrays submitted."""
    out = Path(out)
    if not (out / STATE).exists():
        return f"campaign {name}: nothing in {out} yet (no {STATE}); start it with --budget-s, --devices or --slurm"
    state = json.loads((out / STATE).read_text())
    if state.get("name", name) != name:
        raise UserError(f"{out} holds campaign {state['name']!r}, not {name!r}: ask for --status of {state['name']}")
    jobs = campaign_jobs(name, state["seeds"], state["scale"], state["subset"], state["test_subset"],
                         state.get("fuse", True), state.get("precision", TABLE6_PRECISION))  # as _check_state reads them
    calls = state.get("calls", [])
    dev_name = calls[-1]["device"] if calls else "this device"
    summary = {**summarize(jobs, {j.key: job_iteration(out, j) for j in jobs}, Speeds(state.get("speeds", {})), dev_name),
               "failed": state.get("failed", {})}
    claims = JobClaims(out)
    busy = {j.label for j in jobs if claims.busy(j.key)}
    for r in summary["rows"]:
        r["status"] = "training" if r["job"] in busy and r["status"] != "done" else r["status"]
    lines = format_summary(name, summary).splitlines()
    statuses = read_statuses(out)  # a worker training now: its status names a job whose lock is held
    n, t = sum(any(j["label"] in busy for j in s.get("jobs", [])) for s in statuses), summary["time_left_s"]
    if t is not None and n > 1:
        lines[-1] += f" for one worker; ~{t / n / 60:.1f} min for the {n} workers training now"
    lines += _worker_lines(statuses, time.time() if now is None else now)
    for s in state.get("slurm", []):
        lines.append(f"Slurm array {s['array']} ({s['workers']} workers, {s['spec']}), submitted {s['submitted_utc']}; "
                     f"logs in {s['folder']}")
    return "\n".join(lines)


def _worker_lines(statuses: list[dict], now: float, most: int = 12) -> list[str]:
    """The workers, newest first: every worker of every call leaves a status file, so only the ``most`` newest."""
    statuses = sorted(statuses, key=lambda s: -s.get("updated", 0))
    lines = ["workers (their status files, DIR/workers/):"] if statuses else []
    for s in statuses[:most]:
        doing = ", ".join(f"{j['label']} {j['iteration']}/{j['iters']}" for j in s.get("jobs", [])) or "no job"
        end = f"ended: {WHY_STOPPED.get(s['stopped'], s['stopped'])}" if s.get("stopped") else f"training {doing}"
        lines.append(f"  {s['worker']:24s} {s.get('device', '?')}: {end} (updated {now - s['updated']:.0f} s ago)")
    if len(statuses) > most:
        lines.append(f"  and {len(statuses) - most} older")
    return lines
