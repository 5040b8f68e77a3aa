"""A campaign's workers on a Slurm cluster, through submitit (issue #30): ``campaign table6 --out /shared/DIR
--slurm partition=gpu,gpus=8,time=240`` submits 8 workers as one job array, each with one GPU, each training the
set in ``DIR`` until it is done (``shared`` keeps them apart, as it keeps the workers of ``--devices``).

A worker is a :class:`CampaignWorker`, a ``submitit.helpers.Checkpointable``. 90 s before its time limit Slurm
sends it USR2 (submitit's ``--signal=USR2@90``; on preemption too where the cluster sets
``PreemptParameters=send_user_signal``). The worker takes that signal itself: its runs stop after their
current step, each with a checkpoint, exactly as Ctrl-C stops a campaign; then it hands over to submitit's own
handler, which calls :meth:`CampaignWorker.checkpoint` (the same worker again: everything is on disk), requeues
the array task and exits. The requeued task continues from the checkpoints. SIGTERM (``scancel``; preemption
without the user signal, where Slurm's ``PreemptMode=REQUEUE`` requeues the task itself) stops it the same way.

submitit is an optional extra: ``pip install -e '.[cluster]'``. ``cluster=local`` in the spec runs the array
on this machine with submitit's local executor, no Slurm needed (a way to try it; the tests use it).
"""
from __future__ import annotations

import shutil
import signal
from pathlib import Path

from ..base.errors import UserError
from ..base.io import ensure_writable_dir, utc_now
from .driver import StopRequest, _check_state, campaign_want, run_campaign
from .sets import SET_KEYS
from .shared import SharedLog

try:
    import submitit
    from submitit.helpers import Checkpointable, DelayedSubmission
except ImportError:  # the optional extra is not installed: --slurm says how to add it
    submitit, Checkpointable, DelayedSubmission = None, object, None

MISSING = ("--slurm needs submitit, an optional extra of resnet_lib: pip install -e '.[cluster]' (or pip install "
           "'submitit>=1.5') into this environment, which the cluster's nodes must share")
PREEMPT = signal.SIGUSR2   # submitit's signal for "time limit near, or preempted": checkpoint and requeue
MAX_REQUEUES = 30          # time limits a worker may reach and be requeued after (submitit's max_num_timeout)
SPEC = {"partition": str, "gpus": int, "workers": int, "time": str, "cpus": int, "mem": float, "account": str,
        "qos": str, "constraint": str, "parallel": int, "cluster": str}
EXAMPLE = "e.g. --slurm partition=gpu,gpus=8,time=240"


def minutes(text: str) -> int:
    """A time limit in minutes: "240", or "4:00:00" (hours:minutes:seconds)."""
    parts = text.split(":")
    try:
        if len(parts) == 1:
            return int(parts[0])
        if len(parts) == 3:
            h, m, s = (int(p) for p in parts)
            return h * 60 + m + (s > 0)
    except ValueError:
        pass
    raise UserError(f"--slurm time={text!r}: give minutes (240) or hours:minutes:seconds (4:00:00)")


def parse_spec(text: str) -> dict:
    """``--slurm``'s KEY=VALUE list, checked: ``gpus=N`` N workers with one GPU each (default 1), or ``workers=N``
    N workers without a GPU; ``time`` each worker's limit (default 60 minutes); the rest as Slurm names them."""
    spec = {}
    for part in (p.strip() for p in text.split(",")):
        key, sep, value = part.partition("=")
        if not sep or key not in SPEC or not value:
            raise UserError(f"--slurm {text!r}: {part!r} is not KEY=VALUE with a key of {', '.join(SPEC)}; {EXAMPLE}")
        try:
            spec[key] = SPEC[key](value)
        except ValueError:
            raise UserError(f"--slurm {key}={value!r}: {key} takes a number; {EXAMPLE}") from None
    spec["time"] = minutes(spec.get("time", "60"))
    if "gpus" in spec and "workers" in spec:
        raise UserError(f"--slurm {text!r}: give gpus=N (a worker on each of N GPUs) or workers=N (N workers "
                        "without GPUs), not both")
    if spec.get("cluster", "slurm") not in ("slurm", "local"):
        raise UserError(f"--slurm cluster={spec['cluster']!r}: slurm (the default) or local (this machine)")
    if spec.get("gpus", spec.get("workers", 1)) < 1 or spec["time"] < 1:
        raise UserError(f"--slurm {text!r}: the workers and the time must be positive; {EXAMPLE}")
    return spec


class CampaignWorker(Checkpointable):
    """One worker of a campaign as a submitit job (an array task), for at most ``budget_s`` (its time limit)."""

    def __init__(self, name: str, out: str, options: dict, budget_s: float):
        self.name, self.out, self.options, self.budget_s = name, out, options, budget_s

    def __call__(self) -> dict:
        requeue = signal.getsignal(PREEMPT)  # submitit's handler: checkpoint(), then requeue this task and exit
        summary = run_campaign(self.name, self.out, self.budget_s, stop=StopRequest(also=(PREEMPT,)), wait=False,
                               progress=False, margin_s=0, **self.options)
        if summary["stopped"] in ("preempted", "budget") and callable(requeue):
            requeue(PREEMPT, None)  # does not return where submitit requeues the task
        return {k: summary[k] for k in ("count", "stopped", "time_left_s")}

    def checkpoint(self, *args, **kwargs):
        """What submitit resubmits on preemption or at the time limit: this same worker. Its runs' checkpoints
        are on disk (written as it stopped), so the requeued task simply continues from them."""
        return DelayedSubmission(self, *args, **kwargs)


def executor(folder: Path, spec: dict):
    """submitit's executor for ``spec``: Slurm's, or with ``cluster=local`` its local one (this machine)."""
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=spec.get("cluster", "slurm"), slurm_max_num_timeout=MAX_REQUEUES,
                               local_max_num_timeout=MAX_REQUEUES)
    ex.update_parameters(name="resnet-campaign", timeout_min=spec["time"], gpus_per_node=1 if "workers" not in spec
                         else 0, cpus_per_task=spec.get("cpus"), mem_gb=spec.get("mem"), stderr_to_stdout=True,
                         slurm_partition=spec.get("partition"), slurm_account=spec.get("account"),
                         slurm_qos=spec.get("qos"), slurm_constraint=spec.get("constraint"),
                         slurm_array_parallelism=spec.get("parallel"))
    return ex


def submit(name: str, out, options: dict, spec_text: str, log=print) -> list:
    """Submit the workers of campaign ``name`` (``options``: ``run_campaign``'s) as one job array; return
    submitit's jobs. The array is recorded in ``campaign.json`` ("slurm"), which ``--status`` shows."""
    if submitit is None:
        raise UserError(MISSING)
    spec = parse_spec(spec_text)
    if spec.get("cluster", "slurm") == "slurm" and shutil.which("sbatch") is None:
        raise UserError("--slurm: there is no Slurm here (no sbatch command); submit from the cluster's login node, "
                        "or train on this machine's GPUs with --devices all (cluster=local tries the array here)")
    out = ensure_writable_dir(Path(out).resolve(), fix="choose a folder every node of the cluster sees")
    shared = SharedLog(out, campaign_want(name, *(options[k] for k in SET_KEYS)), _check_state)
    shared.claim_folder()  # another campaign's folder is refused here, before anything is submitted
    n = spec.get("gpus", spec.get("workers", 1))
    jobs = executor(out / "slurm", spec).submit_array(
        [CampaignWorker(name, str(out), options, spec["time"] * 60.0) for _ in range(n)])
    array = str(jobs[0].job_id).split("_")[0]
    shared.note("slurm", {"array": array, "job_ids": [str(j.job_id) for j in jobs], "workers": n, "spec": spec_text,
                          "submitted_utc": utc_now(), "folder": str(out / "slurm")})
    log(f"campaign {name}: submitted {n} workers as {spec.get('cluster', 'slurm')} job array {array} ({spec_text}); "
        f"each trains until the set is done, requeued at its time limit or on preemption. Logs: {out / 'slurm'}/. "
        f"Where it stands: python -m resnet_lib campaign {name} --out {out} --status")
    return jobs
