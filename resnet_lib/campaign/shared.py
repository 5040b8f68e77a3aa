"""What the workers of one campaign share on disk, so that any number of them, on one machine or on many
that mount the same folder, train one set together (issue #30).

- A job is *claimed* by an OS file lock, ``DIR/locks/<group>/<job>.lock``, taken without waiting and held
  for as long as the worker trains the job. It is ``filelock.FileLock``, an ``flock``: the kernel releases
  it when the process ends in any way (finished, crashed, SIGKILLed), so a dead worker's job is free for
  another at once, which resumes it from its checkpoint; and while a worker lives, no other can train its
  job. A lock that outlived its process (a marker file) would leave a killed worker's job untrained forever.
- ``DIR/campaign.json`` (the set, its options, the measured speeds, each call's log) is written by every
  worker: each write re-reads it under its own lock (``DIR/locks/campaign.json.lock``), merges this worker's
  part in (its call's entry, the speeds it measured since its last write, the jobs it set aside) and
  replaces the file atomically, so no worker's update is lost.
- Each worker keeps ``DIR/workers/<host>-<pid>.json``: where it runs and which jobs it trains now (what the
  display of ``--devices`` and ``--status`` read).

``flock`` works across machines where the shared file system supports it: NFSv4 and NFSv3 with lockd do
(Linux maps ``flock`` to NFS byte-range locks; a crashed client's locks are freed when its lease ends, about
90 s), Lustre only when mounted with ``-o flock``. Where the file system has no ``flock`` at all, filelock
falls back to a marker file that it treats as stale only when its process is gone *on this machine*:
there, run the workers of one folder on one machine.
"""
from __future__ import annotations

import copy
import json
import os
import platform
import time
from pathlib import Path

import filelock

from ..base.io import atomic_write_json, utc_now

STATE = "campaign.json"
LOCKS = "locks"
WORKERS = "workers"


def worker_id() -> str:
    """This process's name among the workers: ``<host>-<pid>`` (unique while it runs, on a shared folder too)."""
    return f"{platform.node() or 'host'}-{os.getpid()}"


class JobClaims:
    """The jobs this worker holds: one OS lock each (see the module docstring), taken without waiting."""
    lock_class = filelock.FileLock  # tests swap in a lock that a process's death does not release, to show why

    def __init__(self, out: Path):
        self.root, self.held = Path(out) / LOCKS, {}

    def path(self, key: str) -> Path:
        return self.root / f"{key}.lock"  # a job's key is "<group>/<slug>": one folder per group

    def claim(self, key: str) -> bool:
        """Take ``key``'s lock if no other worker holds it (True: this worker may train the job now)."""
        if key in self.held:
            return True
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.lock_class(str(path))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        self.held[key] = lock
        return True

    def release(self, key: str) -> None:
        lock = self.held.pop(key, None)
        if lock is not None:
            lock.release()

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(key)

    def busy(self, key: str) -> bool:
        """Whether another process holds ``key`` now (a probe: the lock is taken and given back at once)."""
        if key in self.held or not self.path(key).exists():
            return key in self.held
        try:
            if self.claim(key):
                self.release(key)
                return False
        except OSError:  # a folder this process may only read: it cannot tell
            return False
        return True


class SharedLog:
    """``campaign.json`` as several workers keep it: every write a read-merge-write under its lock."""

    def __init__(self, out: Path, want: dict, check):
        self.path, self.want, self.check = Path(out) / STATE, want, check
        self.lock = filelock.FileLock(str(Path(out) / LOCKS / f"{STATE}.lock"))
        (Path(out) / LOCKS).mkdir(parents=True, exist_ok=True)
        self.merged: dict = {}  # the speeds table as this worker last wrote it: what it measured since is its own
        self.index = None       # this worker's entry in "calls" (entries are only ever appended)

    def _read(self) -> dict:
        state = json.loads(self.path.read_text()) if self.path.exists() else {**self.want, "speeds": {}, "calls": []}
        self.check(state, self.want, self.path)
        return state

    def open(self, call: dict) -> dict:
        """Add this call to the log (checking the folder is this campaign's) and return the state as it is now."""
        with self.lock:
            state = self._read()
            self.index = len(state["calls"])
            state["calls"].append(call)
            atomic_write_json(self.path, state)
        self.merged = copy.deepcopy(state["speeds"])
        return state

    def save(self, call: dict, speeds: dict, failed: dict) -> dict:
        """Merge this worker's part into the file: its call's entry, the speeds it measured since its last write
        (``speeds`` minus what it last wrote), the jobs it set aside. Returns the merged state, whose speeds and
        failed jobs are every worker's."""
        with self.lock:
            state = self._read()
            table = state.setdefault("speeds", {})
            for key, (units, secs) in speeds.items():
                u0, s0 = self.merged.get(key, (0.0, 0.0))
                have = table.get(key, [0.0, 0.0])
                table[key] = [have[0] + units - u0, have[1] + secs - s0]
            state.setdefault("failed", {}).update(failed)
            state["calls"][self.index] = call
            atomic_write_json(self.path, state)
        self.merged = copy.deepcopy(table)
        return state

    def claim_folder(self) -> None:
        """Check that the folder is this campaign's (or make it so, when new), before any worker starts."""
        with self.lock:
            state = self._read()
            if not self.path.exists():
                atomic_write_json(self.path, state)

    def note(self, key: str, entry: dict) -> None:
        """Append ``entry`` to the list ``key`` of the state (e.g. the Slurm arrays submitted for it)."""
        with self.lock:
            state = self._read()
            state.setdefault(key, []).append(entry)
            atomic_write_json(self.path, state)


def failed_now(out: Path) -> dict:
    """The jobs set aside (diverged) by any worker so far, read from the file as it stands."""
    path = Path(out) / STATE
    return json.loads(path.read_text()).get("failed", {}) if path.exists() else {}


def write_status(out: Path, worker: str, info: dict) -> None:
    """This worker's line of the display and of ``--status``: where it runs and what it trains now."""
    atomic_write_json(Path(out) / WORKERS / f"{worker}.json",
                      {"worker": worker, "host": platform.node(), "pid": os.getpid(), **info,
                       "updated_utc": utc_now(), "updated": time.time()})


def read_statuses(out: Path) -> list[dict]:
    """Every worker's status file (a damaged or half-gone one is left out)."""
    found = []
    for p in sorted((Path(out) / WORKERS).glob("*.json")):
        try:
            found.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return found
