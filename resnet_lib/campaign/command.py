"""The campaign's command line, ``python -m resnet_lib campaign NAME --out DIR``: one worker in this process
(``driver.run_campaign``), several on this machine (``--workers``, ``--devices``: ``workers``), an array of them on
a Slurm cluster (``--slurm``: ``slurm``), or only where the campaign stands (``--status``). Every way trains the
same folder the same way; workers of all three kinds may share one folder at once (``shared``)."""
from __future__ import annotations

import argparse

from ..base.errors import UserError
from ..base.precision import POLICIES
from ..experiments.shipped import export_campaign
from .driver import __doc__ as DRIVER_DOC
from .driver import run_campaign
from .progress import campaign_status
from .sets import SETS, TABLE6_PRECISION


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m resnet_lib campaign", description=DRIVER_DOC.splitlines()[0])
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
    ap.add_argument("--devices", default=None, metavar="all|0,1,3", help="one worker process per GPU named (all: "
                    "every GPU torch sees), each with its own lanes, all on this --out")
    ap.add_argument("--workers", type=int, default=1, help="worker processes per device (--device, or each of "
                    "--devices), all on this --out; e.g. 2 on one GPU, or on a CPU")
    ap.add_argument("--slurm", default=None, metavar="SPEC", help="submit the workers to Slurm as a job array "
                    "(submitit, pip install -e '.[cluster]'): partition=P,gpus=N,time=MINUTES[,account=,qos=,"
                    "constraint=,cpus=,mem=GB,parallel=N]; docs/gpu.md")
    ap.add_argument("--status", action="store_true", help="where the campaign stands (runs, workers training "
                    "now, Slurm arrays); trains and submits nothing")
    ap.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)  # a worker of --workers: no bars
    ap.add_argument("--export", default=None, metavar="DEST", help="then export the finished runs into DEST "
                    "(results/cifar10: JSON per run, Fig. 7 responses, fp16 weights)")
    return ap


def _options(a: argparse.Namespace) -> dict:
    """The options every worker of the campaign trains with (``run_campaign``'s keywords)."""
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds takes comma-separated integers, e.g. 1,2,3; got {a.seeds!r}") from None
    return dict(seeds=seeds, scale=a.scale, subset=a.subset, test_subset=a.test_subset, fuse=not a.no_fuse,
                together=a.together, only_started=a.only_started, precision=a.precision,
                only=tuple(n.strip() for n in a.only.split(",") if n.strip()))


def cli(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    opts = _options(a)
    if a.status:
        print(campaign_status(a.name, a.out))  # the set's options are the folder's own
        return 0
    if a.slurm:
        if a.devices or a.workers != 1:
            raise UserError("--slurm takes its workers from its own spec (gpus=N, or workers=N), not --devices/--workers")
        from .slurm import submit  # submitit is an optional extra: imported only here
        submit(a.name, a.out, {**opts, "device": a.device}, a.slurm)
        return 0
    if a.devices or a.workers != 1:  # (0 or fewer: run_workers says what it takes)
        from .workers import run_workers
        code = run_workers(a.name, a.out, a.budget_s, opts, device=a.device, devices=a.devices, per_device=a.workers)
    else:
        summary = run_campaign(a.name, a.out, a.budget_s, device=a.device, progress=not a.quiet, **opts)
        code = 130 if summary["stopped"] == "interrupted" else 0  # as a shell reports Ctrl-C; no export then
    if code == 0 and a.export:
        written = export_campaign(a.out, a.export, device=a.device)
        print(f"exported {len(written['runs'])} finished runs into {a.export}")
    return code
