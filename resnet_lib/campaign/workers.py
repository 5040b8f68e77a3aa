"""Several workers of one campaign on this machine (issue #30): ``--devices all`` (or ``0,1,3``) starts one worker
process per GPU, ``--workers N`` N of them per device (two on one GPU, or N on the CPU, where the tests run them).
Each worker is the campaign's own command on its own device, with its own lanes, and all train one ``--out``:
``shared`` keeps them apart (a job is claimed by a lock; a dead worker's job is taken up by another from its
checkpoint), so the runs end bitwise as one worker would have trained them.

This process only watches: one bar for the whole set, with its time still needed for the workers together, and
one line per worker with the job it trains now (from ``DIR/workers/*.json``). Ctrl-C and SIGTERM are handed on
to every worker, which stops after its step with checkpoints; a second Ctrl-C stops them at once. Each worker's
own output goes to ``DIR/workers/<n>.log``. The workers run in sessions of their own: if this process is killed,
they go on to their budget (``--status`` shows them).

On a CPU, a worker gets ``OMP_NUM_THREADS`` = cores / workers unless it is set. Where the thread count differs,
oneDNN may sum convolutions in another order, so on a CPU "bitwise equal to one worker" holds at equal thread
counts (the tests run every worker, and the one they compare with, on one thread)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..base.errors import UserError
from ..base.io import ensure_writable_dir
from .progress import campaign_status, job_iteration, summarize
from .sets import SET_KEYS, Speeds, campaign_jobs
from .shared import STATE, WORKERS, read_statuses


def device_list(devices: str | None, device: str = "auto") -> list[str]:
    """The devices to start workers on: ``devices`` "all" or GPU indices ("0,1,3"), else just ``device``."""
    if devices is None:
        return [device]
    n = torch.cuda.device_count()
    if n == 0:
        raise UserError(f"--devices {devices} asks for GPUs, but torch sees none on this machine (no CUDA build, "
                        "driver or CUDA_VISIBLE_DEVICES); to run several workers on the CPU, use --workers N instead")
    if devices.strip() == "all":
        return [f"cuda:{i}" for i in range(n)]
    try:
        idx = [int(x) for x in devices.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--devices takes 'all' or GPU indices such as 0,1,3; got {devices!r}") from None
    bad = [i for i in idx if not 0 <= i < n]
    if bad or not idx or len(set(idx)) != len(idx):
        raise UserError(f"--devices {devices}: give distinct GPU indices of this machine's {n} GPU(s), "
                        f"0 to {n - 1}{f' ({bad} is not one)' if bad else ''}, or 'all'")
    return [f"cuda:{i}" for i in idx]


def worker_argv(name: str, out, budget_s: float, opts: dict, device: str) -> list[str]:
    """The command line of one worker: the campaign's own command, on ``device``, without bars."""
    argv = [sys.executable, "-m", "resnet_lib", "campaign", name, "--out", str(out), "--budget-s", str(budget_s),
            "--seeds", ",".join(str(s) for s in opts["seeds"]), "--scale", repr(opts["scale"]),
            "--subset", str(opts["subset"]), "--test-subset", str(opts["test_subset"]), "--together",
            str(opts["together"]), "--precision", opts["precision"], "--device", device, "--quiet"]
    argv += [] if opts["fuse"] else ["--no-fuse"]
    argv += ["--only-started"] if opts["only_started"] else []
    return argv + (["--only", ",".join(opts["only"])] if opts["only"] else [])


def start_workers(name: str, out: Path, budget_s: float, opts: dict, devs: list[str]) -> list[dict]:
    """One process per entry of ``devs``, each in a session of its own (a terminal's Ctrl-C reaches this process
    alone, which hands it on once), its output in ``DIR/workers/<n>.log``."""
    (out / WORKERS).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    cpu = sum(not d.startswith("cuda") for d in devs)
    if cpu and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // cpu))
    workers = []
    for i, dev in enumerate(devs):
        log = out / WORKERS / f"{i}.log"
        own, arg = _one_gpu(env, dev)
        with open(log, "ab") as f:
            proc = subprocess.Popen(worker_argv(name, out, budget_s, opts, arg), stdout=f, stderr=subprocess.STDOUT,
                                    env={**env, **own}, start_new_session=True)
        workers.append({"n": i, "device": dev, "proc": proc, "log": log})
    return workers


def _one_gpu(env: dict, dev: str) -> tuple[dict, str]:
    """A worker for GPU ``cuda:i`` sees that GPU alone, as its ``cuda`` (CUDA_VISIBLE_DEVICES, counted within this
    process's own list), so that its CUDA graphs and streams live on the device current to it."""
    if not dev.startswith("cuda:"):
        return {}, dev
    i = int(dev.split(":")[1])
    visible = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return {"CUDA_VISIBLE_DEVICES": visible[i] if visible else str(i)}, "cuda"


class Forward:
    """While entered (main thread): SIGINT and SIGTERM are sent on to every worker still running."""
    signals = 0

    def __init__(self, workers: list[dict]):
        self.workers = workers

    def _handle(self, signum, frame):
        self.signals += 1
        for w in self.workers:
            if w["proc"].poll() is None:
                w["proc"].send_signal(signum)

    def __enter__(self):
        self.old = {}
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)
                        if signal.getsignal(s) is not signal.SIG_IGN}
        return self

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


class Display:
    """The set's bar (run-iterations done, time still needed for the workers together) and one line per worker."""

    def __init__(self, name: str, out: Path, jobs, workers: list[dict], progress: bool):
        self.out, self.jobs, self.workers = out, jobs, workers
        self.bar = tqdm(total=sum(j.iters * len(j.entries) for j in jobs), desc=f"campaign {name}", unit="it",
                        disable=not progress, dynamic_ncols=True, position=0)
        self.lines = [tqdm(total=0, bar_format="{desc}", position=i + 1, disable=not progress, leave=False)
                      for i in range(len(workers))]

    def update(self) -> None:
        try:
            at = {j.key: job_iteration(self.out, j) for j in self.jobs}
        except ValueError:  # a checkpoint replaced or moved while read: the next update reads it again
            return
        statuses = {s.get("pid"): s for s in read_statuses(self.out)}
        self.bar.n = sum(at[j.key] * len(j.entries) for j in self.jobs)
        self.bar.set_postfix_str(self._time_left(at, statuses), refresh=False)
        self.bar.refresh()
        for w, line in zip(self.workers, self.lines):
            s, code = statuses.get(w["proc"].pid), w["proc"].poll()
            doing = ", ".join(f"{j['label']} {j['iteration']}/{j['iters']}" for j in (s or {}).get("jobs", []))
            idle = "starting" if s is None else ("waiting for jobs other workers hold" if s.get("waiting_for")
                                                 else "between jobs")
            state = f"ended ({'done' if code == 0 else f'exit code {code}'})" if code is not None else doing or idle
            line.set_description_str(f"  worker {w['n']} on {w['device']}: {state}")

    def _time_left(self, at: dict, statuses: dict) -> str:
        path = self.out / STATE
        dev = next((statuses[w["proc"].pid]["device"] for w in self.workers if w["proc"].pid in statuses), None)
        if not path.exists() or dev is None:
            return "time left: not measured yet"
        try:  # the state file, as the workers last merged it
            speeds = Speeds(json.loads(path.read_text()).get("speeds", {}))
        except ValueError:
            return "time left: ..."
        t = summarize(self.jobs, at, speeds, dev)["time_left_s"]
        n = max(1, sum(w["proc"].poll() is None for w in self.workers))
        return "time left: not measured yet" if t is None else \
            f"~{t / n / 60:.1f} min left for {n} worker{'s' if n > 1 else ''}"

    def close(self) -> None:
        for bar in [*self.lines, self.bar]:
            bar.close()


def run_workers(name: str, out, budget_s: float, opts: dict, *, device: str = "auto", devices: str | None = None,
                per_device: int = 1, progress: bool = True, log=print, poll_s: float = 2.0) -> int:
    """Train campaign ``name`` in ``out`` with ``per_device`` workers on each device (``device_list``), each for
    at most ``budget_s`` seconds; watch them to their end, then log where the campaign stands. Returns the exit
    code: 0, 130 when interrupted, else 1 when a worker failed (its log's last lines are shown)."""
    if budget_s <= 0:
        raise UserError("--workers and --devices start workers that train: give each its time with --budget-s SECONDS")
    if per_device < 1:
        raise UserError(f"--workers takes a positive number of workers per device, got {per_device}")
    out = ensure_writable_dir(out, fix="choose another --out folder")
    devs = [d for d in device_list(devices, device) for _ in range(per_device)]
    jobs = campaign_jobs(name, *(opts[k] for k in SET_KEYS))
    workers = start_workers(name, out, budget_s, opts, devs)
    log(f"campaign {name}: {len(workers)} workers on {', '.join(sorted(set(devs)))}, all on {out}; "
        f"their output: {out / WORKERS}/<n>.log")
    display = Display(name, out, jobs, workers, progress)
    with Forward(workers) as fwd:
        while any(w["proc"].poll() is None for w in workers):
            display.update()
            time.sleep(poll_s)
        display.update()
    display.close()
    log(campaign_status(name, out))
    failed = [w for w in workers if w["proc"].returncode not in (0, 130)]
    for w in failed:
        tail = w["log"].read_text(errors="replace").strip().splitlines()[-5:]
        log(f"worker {w['n']} on {w['device']} failed (exit code {w['proc'].returncode}); the end of {w['log']}:\n  " +
            "\n  ".join(tail))
    return 130 if fwd.signals else (1 if failed else 0)
