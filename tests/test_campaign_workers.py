"""Many workers, one campaign (issue #30): worker processes on one ``--out`` claim each job with an OS lock, so
no job trains twice at once, a killed worker's job is finished by another from its checkpoint, and every run
ends bitwise as one worker trains it.

The workers are real processes training the tiny ``smoke`` set (test_campaign's scale: ResNet-8 and plain-8,
16 iterations, 512 images). Most run this file as a script (``_worker``), which traces every SGD step of every
job into ``DIR/trace/<job>.log`` (the worker's pid and the iteration reached) and can remove a protection: the
lock not taken ("none"), or a lock that outlives its process ("outlives": a marker file, as a hand-written lock
would be), to show that the checks below see what then goes wrong. Every worker, and the one worker they are
compared with, runs on one thread: oneDNN's convolutions sum in an order that depends on the thread count.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(seeds=(1, 2), scale=16 / 64_000, subset=512, test_subset=100, fuse=False)  # 4 jobs, one run each
ONE_SEED = {**TINY, "seeds": (1,)}  # 2 jobs: ResNet-8 and plain-8, seed 1
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "RESNET_DEBUG": ""}


# ----------------------------------------------------------------------------- a worker, as a script

class MarkerLock:
    """A lock held by a marker file, not by the process: a killed holder never gives it back (the protection
    ``filelock.FileLock`` gives, removed)."""

    def __init__(self, path: str):
        self.held = path + ".held"

    def acquire(self, timeout=0):
        import filelock
        try:
            os.close(os.open(self.held, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise filelock.Timeout(self.held) from None

    def release(self):
        os.unlink(self.held)


def _trace_steps(trainer, out: Path, key: str, block_at: int) -> None:
    """Record every step of ``trainer`` (pid, iteration reached) in ``out/trace``; at ``block_at`` (its checkpoint
    written), say so in ``out/blocked`` and hang, to be killed there."""
    real, log = trainer.step, out / "trace" / f"{key.replace('/', '__')}.log"
    log.parent.mkdir(exist_ok=True)

    def step(x, y, end):
        if trainer.state.iteration == block_at:
            (out / "blocked").write_text(key)
            time.sleep(3600)
        real(x, y, end)
        with open(log, "a") as f:  # one short append per step: whole lines, in the order the steps ran
            f.write(f"{os.getpid()} {trainer.state.iteration}\n")
    trainer.step = step


def _worker(out: Path, lock: str, seeds: int, barrier: int, block_at: int, budget_s: float) -> None:
    import torch

    from resnet_lib.campaign import driver as cp
    from resnet_lib.campaign import shared

    torch.set_num_threads(1)
    if lock == "none":
        shared.JobClaims.claim = lambda self, key: True
    elif lock == "outlives":
        shared.JobClaims.lock_class = MarkerLock
    made = cp.job_trainer

    def traced(job, *a, **kw):
        trainer = made(job, *a, **kw)
        if trainer is not None:
            _trace_steps(trainer, out, job.key, block_at)
        return trainer
    cp.job_trainer = traced
    (out / "ready").mkdir(parents=True, exist_ok=True)
    (out / "ready" / str(os.getpid())).touch()
    while len(list((out / "ready").iterdir())) < barrier:  # all start at once, and so reach for the same first job
        time.sleep(0.05)
    opts = TINY if seeds == 2 else ONE_SEED
    cp.run_campaign("smoke", out, budget_s, device="cpu", progress=False, log=print, poll_s=0.5, **opts)


def _start(out: Path, lock: str = "flock", seeds: int = 1, barrier: int = 1, block_at: int = -1,
           budget_s: float = 600) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, str(out), lock, str(seeds), str(barrier), str(block_at),
                             str(budget_s)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(p: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out[-3000:]
    return out


# ----------------------------------------------------------------------------- the checks

def _trace(out: Path) -> dict[str, list[tuple[int, int, int]]]:
    """Each job's training as stretches ``(pid, first iteration, last iteration)``, in the order they ran."""
    found = {}
    for log in sorted((out / "trace").glob("*.log")):
        stretches = []
        for pid, it in (map(int, line.split()) for line in log.read_text().splitlines()):
            if stretches and stretches[-1][0] == pid and stretches[-1][2] == it - 1:
                stretches[-1] = (pid, stretches[-1][1], it)
            else:
                stretches.append((pid, it, it))
        found[log.stem.replace("__", "/")] = stretches
    return found


def check_each_job_trained_once(trace: dict, jobs) -> None:
    """Every job trained by one worker, from its first iteration to its last, each step once."""
    assert sorted(trace) == sorted(j.key for j in jobs), trace
    for j in jobs:
        assert len(trace[j.key]) == 1 and trace[j.key][0][1:] == (1, j.iters), (j.label, trace[j.key])


def check_taken_over(trace: dict, key: str, victim: int, block_at: int, iters: int) -> None:
    """The killed worker's job: trained by it to ``block_at``, then by another, from the checkpoint written there."""
    (who, first, last), *rest = trace[key]
    assert (who, first, last) == (victim, 1, block_at), trace[key]
    assert len(rest) == 1 and rest[0][0] != victim and rest[0][1:] == (block_at + 1, iters), trace[key]


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    """The set trained by one worker in this process, on one thread as each worker below."""
    import torch

    from resnet_lib.campaign import driver as cp
    out = tmp_path_factory.mktemp("one_worker")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cp.run_campaign("smoke", out, 1e9, device="cpu", progress=False, log=None, **TINY)
    finally:
        torch.set_num_threads(threads)
    return out


def _same_runs(ref: Path, out: Path, opts: dict) -> None:
    from test_campaign import _same_runs as same  # results and weights, bitwise
    same(ref, out, opts)


# ----------------------------------------------------------------------------- the tests

@pytest.mark.slow
@pytest.mark.parametrize("lock", ["flock", "none"])
def test_two_workers_on_one_folder_train_each_job_once_and_match_one_worker(lock, one_worker, tmp_path):
    """Two workers, started at the same moment, reach for the same first job: with the lock, one trains it and
    the other the next, and the runs equal one worker's bitwise. Without it ("none"), the check sees the first
    job trained by both at once."""
    from resnet_lib.campaign import driver as cp
    workers = [_start(tmp_path, lock, barrier=2) for _ in range(2)]
    for w in workers:
        _finish(w)
    jobs, trace = cp.campaign_jobs("smoke", **ONE_SEED), _trace(tmp_path)
    if lock == "none":
        with pytest.raises(AssertionError):
            check_each_job_trained_once(trace, jobs)
        assert any(len({pid for pid, _, _ in s}) == 2 for s in trace.values())  # two workers on one job
        return
    check_each_job_trained_once(trace, jobs)
    assert len({s[0][0] for s in trace.values()}) == 2  # each worker trained one of the two jobs
    _same_runs(one_worker, tmp_path, ONE_SEED)
    calls = json.loads((tmp_path / "campaign.json").read_text())["calls"]  # both workers' logs, merged, none lost
    assert len(calls) == 2 and sorted(k for c in calls for k in c["jobs"]) == sorted(j.key for j in jobs)


def _kill_mid_job(out: Path, lock: str, block_at: int = 6) -> tuple[int, bool, dict]:
    """A worker trains ResNet-8 to ``block_at`` and hangs; a second one starts, trains plain-8 (ResNet-8 is held)
    and waits; the first is SIGKILLed. Returns the victim's pid, whether the survivor then took ResNet-8 over
    (within 10 s, 20 of its polls; else it is stopped with SIGTERM) and the trace."""
    victim = _start(out, lock, block_at=block_at)
    deadline = time.monotonic() + 120
    while not (out / "blocked").exists():
        assert victim.poll() is None and time.monotonic() < deadline, victim.communicate()[0][-3000:]
        time.sleep(0.1)
    survivor = _start(out, lock)
    while sum(s[-1][2] == 16 for s in _trace(out).values()) < 1:  # plain-8 trained to its end by the survivor
        assert survivor.poll() is None and time.monotonic() < deadline + 120, survivor.communicate()[0][-3000:]
        time.sleep(0.2)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    key, later = open(out / "blocked").read(), time.monotonic() + 10
    while len(_trace(out)[key]) == 1 and survivor.poll() is None and time.monotonic() < later:
        time.sleep(0.2)
    taken = len(_trace(out)[key]) > 1
    if not taken:
        survivor.send_signal(signal.SIGTERM)  # stops with checkpoints, as Ctrl-C does
    _finish(survivor)
    return victim.pid, taken, _trace(out)


@pytest.mark.slow
@pytest.mark.parametrize("lock", ["flock", "outlives"])
def test_a_killed_workers_job_is_finished_by_another_from_its_checkpoint(lock, one_worker, tmp_path):
    """SIGKILL mid-job: the kernel releases the worker's lock, the waiting worker takes the job over from the
    checkpoint at iteration 6 and the runs end bitwise as one worker's. With a lock that outlives its process
    ("outlives"), the job stays held by the dead worker: never finished."""
    from resnet_lib.campaign import driver as cp
    victim, taken, trace = _kill_mid_job(tmp_path, lock)
    resnet8 = cp.campaign_jobs("smoke", **ONE_SEED)[0]
    if lock == "outlives":
        with pytest.raises(AssertionError):
            check_taken_over(trace, resnet8.key, victim, 6, 16)
        assert not taken and cp.iteration_of(tmp_path, resnet8.entries[0]) == 6
        return
    assert taken
    check_taken_over(trace, resnet8.key, victim, 6, 16)
    _same_runs(one_worker, tmp_path, ONE_SEED)
    calls = json.loads((tmp_path / "campaign.json").read_text())["calls"]
    assert [c["stopped"] for c in calls] == [None, "finished"]  # the victim's call: killed before it could stop


@pytest.mark.slow
def test_three_workers_from_the_command_line_and_status(one_worker, tmp_path, capsys):
    """``campaign smoke --workers 3`` on the CPU: three processes, four jobs; each job in exactly one worker's log,
    from 0 to its end; every run bitwise one worker's; ``--status`` reads it all back without training."""
    from resnet_lib.campaign import command
    from resnet_lib.campaign import driver as cp
    argv = ["smoke", "--out", str(tmp_path), "--seeds", "1,2", "--scale", repr(TINY["scale"]), "--subset", "512",
            "--test-subset", "100", "--no-fuse", "--device", "cpu"]
    r = subprocess.run([sys.executable, "-m", "resnet_lib", "campaign", *argv, "--workers", "3", "--budget-s", "600"],
                       env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "3 workers on cpu" in r.stdout and "campaign smoke: 4 done, 0 in progress, 0 left" in r.stdout
    calls = json.loads((tmp_path / "campaign.json").read_text())["calls"]
    trained = [(k, span) for c in calls for k, span in c["jobs"].items()]
    jobs = cp.campaign_jobs("smoke", **TINY)
    assert len(calls) == 3 and sorted(trained) == sorted((j.key, [0, 16]) for j in jobs)
    _same_runs(one_worker, tmp_path, TINY)
    assert command.cli(["smoke", "--out", str(tmp_path), "--status"]) == 0  # the set's options: the folder's own
    shown = capsys.readouterr().out
    assert "4 done" in shown and shown.count("ended: nothing more to do") + shown.count("ended: the jobs left") == 3
    from resnet_lib.base.errors import UserError
    with pytest.raises(UserError, match="holds campaign 'smoke', not 'table6'"):
        command.cli(["table6", "--out", str(tmp_path), "--status"])


def _preempt_mid_job(out: Path, jobs, deadline: float) -> int:
    """Slurm's preemption signal (USR2, as 90 s before a time limit) to the first worker seen mid-job (iteration
    2 to 12 of 16 in its checkpoint); returns that iteration."""
    from resnet_lib.campaign import driver as cp
    from resnet_lib.campaign.shared import read_statuses
    entries = {j.key: j.entries[0] for j in jobs}
    while time.monotonic() < deadline:
        for s in read_statuses(out):
            for j in s.get("jobs", []):
                it = cp.iteration_of(out, entries[j["key"]])
                if 2 <= it <= 12 and not s.get("stopped"):
                    os.kill(s["pid"], signal.SIGUSR2)
                    return it
        time.sleep(0.05)
    raise AssertionError("no worker was seen mid-job")


@pytest.mark.slow
def test_a_job_array_through_submitit_preempted_and_requeued_matches_one_worker(one_worker, tmp_path, monkeypatch):
    """``--slurm cluster=local,workers=2``: submitit's local executor runs two workers as a job array. One is
    preempted mid-job (USR2): it stops with checkpoints, submitit requeues it, and the job goes on from the
    iteration it stopped at; every run ends bitwise as one worker's."""
    pytest.importorskip("submitit")  # a guard only: CI installs the cluster extra (make's .venv, .[test,cluster])
    from resnet_lib.campaign import driver as cp
    from resnet_lib.campaign import slurm
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for submitit's processes, which inherit it
    opts = dict(ONE_SEED, precision="fp32", together="auto", only_started=False, only=(), device="cpu")
    lines, deadline = [], time.monotonic() + 300
    jobs = slurm.submit("smoke", tmp_path, opts, "cluster=local,workers=2,time=10", log=lines.append)
    assert len(jobs) == 2 and "submitted 2 workers as local job array" in lines[0]
    at = _preempt_mid_job(tmp_path, cp.campaign_jobs("smoke", **ONE_SEED), deadline)
    while not all(j.done() for j in jobs):
        assert time.monotonic() < deadline, [j.stdout() for j in jobs]
        time.sleep(0.5)
    assert all(j.result()["stopped"] in ("finished", "left to others") for j in jobs), [j.stdout() for j in jobs]
    assert sum("Requeued job" in (j.stdout() or "") for j in jobs) == 1
    state = json.loads((tmp_path / "campaign.json").read_text())
    [stopped] = [c for c in state["calls"] if c["stopped"] == "preempted"]
    [(key, (start, reached))] = [(k, v) for k, v in stopped["jobs"].items() if v[1] < 16]
    assert start == 0 and reached >= at  # stopped mid-job, with a checkpoint there
    assert [c["jobs"][key] for c in state["calls"] if c is not stopped and key in c["jobs"]] == [[reached, 16]]
    _same_runs(one_worker, tmp_path, ONE_SEED)
    assert state["slurm"][0]["workers"] == 2 and len(state["calls"]) == 3  # two workers, one of them requeued


def test_slurm_spec_and_a_missing_submitit_say_what_to_do(monkeypatch):
    from resnet_lib.base.errors import UserError
    from resnet_lib.campaign import slurm
    assert slurm.parse_spec("partition=gpu,gpus=8,time=4:00:00") == {"partition": "gpu", "gpus": 8, "time": 240}
    assert slurm.parse_spec("workers=2,cluster=local")["time"] == 60
    for bad, match in (("partition", "not KEY=VALUE"), ("gpu=8", "not KEY=VALUE"), ("gpus=eight", "takes a number"),
                       ("gpus=2,workers=2", "not both"), ("time=4h", "give minutes"), ("cluster=k8s", "slurm .* or local")):
        with pytest.raises(UserError, match=match):
            slurm.parse_spec(bad)
    monkeypatch.setattr(slurm, "submitit", None)
    with pytest.raises(UserError, match=r"pip install -e '\.\[cluster\]'"):
        slurm.submit("smoke", "unused", {}, "gpus=1")


def test_devices_and_workers_say_what_is_wrong(monkeypatch):
    from resnet_lib.base.errors import UserError
    from resnet_lib.campaign import workers
    monkeypatch.setattr(workers.torch.cuda, "device_count", lambda: 0)
    with pytest.raises(UserError, match="torch sees none on this machine.*--workers N"):
        workers.device_list("all")
    monkeypatch.setattr(workers.torch.cuda, "device_count", lambda: 2)
    assert workers.device_list("all") == ["cuda:0", "cuda:1"] and workers.device_list("1") == ["cuda:1"]
    with pytest.raises(UserError, match=r"2 GPU\(s\), 0 to 1 \(\[5\] is not one\)"):
        workers.device_list("0,5")
    with pytest.raises(UserError, match="'all' or GPU indices"):
        workers.device_list("gpu0")
    with pytest.raises(UserError, match="--budget-s"):
        workers.run_workers("smoke", "unused", 0, {})
    assert workers.device_list(None, "cpu") == ["cpu"]
    # each GPU's worker sees that GPU alone, counted within the GPUs this process sees
    assert workers._one_gpu({}, "cuda:1") == ({"CUDA_VISIBLE_DEVICES": "1"}, "cuda")
    assert workers._one_gpu({"CUDA_VISIBLE_DEVICES": "4,6"}, "cuda:1") == ({"CUDA_VISIBLE_DEVICES": "6"}, "cuda")
    assert workers._one_gpu({}, "cpu") == ({}, "cpu")


if __name__ == "__main__":
    out, lock, seeds, barrier, block_at, budget = sys.argv[1:]
    _worker(Path(out), lock, int(seeds), int(barrier), int(block_at), float(budget))
