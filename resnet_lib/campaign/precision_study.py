"""The precision study (issue #25): which precision policies keep the paper's depth trend.

The shipped bf16 runs' error rose with depth past ResNet-32 where Table 6's falls, and the gap opened while
the learning rate was 0.1. So each run of the study is the paper's full recipe (Section 4.2; the warm-up for
110 layers) stopped at ``cut`` iterations (default 4k, inside the lr-0.1 phase), for the same nets, seeds,
initialisations and data order in every policy (``base.precision``): only the precision differs. A study run
*is* the paper-scale run of its net, seed and policy (the same identity, in the campaign's folder layout), so
the campaign continues it to 64k where that policy is Table 6's.

What is compared: the training error over the stretch that ends at ``cut`` (the curve point at ``cut`` of the
paper's 2k-iteration evaluations: iterations 2k-4k at the default cut), as a function of depth, per policy and
device, over seeds. The rule (:func:`decide`), on one device at a time:
fp32 is the paper's precision and faithful by definition; another policy is *not faithful* when, for ResNet-56
or ResNet-110, its early training error is worse than fp32's by more than the interval of ``evidence.compare``
(twice the standard error of the gap over at least two seeds each); *faithful* when, for both, the gap plus that
interval is at most ``TOLERANCE`` (1 point): the runs rule out a larger harm; *undecided* otherwise (fewer than
two seeds, or an interval too wide to rule it out). ``base.precision.AUTO`` (by device kind,
:func:`defaults`) and the campaign's ``TABLE6_PRECISION`` (a GPU's) are the fastest faithful policy by the kind's
measured cost (:func:`chosen`), so fp32 until another is shown faithful.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..base.device import pick_device
from ..base.io import atomic_write_json, device_name, provenance
from ..base.paths import project_root
from ..base.precision import POLICIES, resolve
from ..data.cifar import load_cifar10
from ..engine.checkpoint import CHECKPOINT, RESULT
from ..engine.config import TrainConfig
from ..engine.state import resolve_pieces
from ..experiments.cifar_runs import CifarRun, cifar_trainer
from .driver import StopRequest, run_dir
from .precision_evidence import (  # noqa: F401  (the study's API: notebook 03, docs and tests read them from here)
    CUT,
    DECIDING,
    FAITHFUL,
    KINDS,
    NOT_FAITHFUL,
    STUDY_POLICIES,
    TOLERANCE,
    UNDECIDED,
    across_devices,
    all_records,
    chosen,
    cost_kind,
    cost_table,
    decide,
    decision_text,
    defaults,
    depth_lines,
    device_of,
    devices,
    early_error,
    early_errors,
    load_costs,
    load_records,
    paired_lines,
    plot,
    section,
    table_rows,
    window,
)
from .sets import TABLE6_PRECISION, Entry, paper_run

NETS = {"ResNet-20": (20, True), "ResNet-56": (56, True), "ResNet-110": (110, True), "plain-56": (56, False)}


def study_entry(net: str, seed: int, policy: str, step: str = "auto") -> Entry:
    """The paper-scale run of ``net``, ``seed`` in ``policy``, in the campaign's group for that policy
    ("main" for Table 6's policy). ``step="eager"``: without the CUDA graph on a GPU (a run of its own, the
    CPU's code path), to tell the graph's part in a GPU's gap from the CPU's."""
    if net not in NETS:
        raise ValueError(f"unknown net {net!r}; the study's nets are {', '.join(NETS)}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; the study compares named policies: {', '.join(POLICIES)}")
    if step not in ("auto", "eager"):
        raise ValueError(f"step must be 'auto' (graphed on a GPU) or 'eager', got {step!r}")
    depth, residual = NETS[net]
    graph = {"cuda_graph": "off"} if step == "eager" else {}
    return Entry(paper_run(depth, residual, seed, 1.0, 0, 0, policy, **graph),
                 "main" if policy == TABLE6_PRECISION else policy)


def plan(nets=tuple(NETS), seeds=(1, 2), policies=STUDY_POLICIES, step: str = "auto") -> list[Entry]:
    """The study's runs in the order they are trained: seed by seed, net by net, every policy of one net and
    seed together (so that each finished group is a same-seed comparison)."""
    return [study_entry(n, s, p, step) for s in seeds for n in nets for p in policies]


def iteration(out: Path, e: Entry) -> int:
    d = run_dir(out, e)
    if (d / RESULT).exists():
        return e.run.train.iters
    if (d / CHECKPOINT).exists():
        return int(torch.load(d / CHECKPOINT, map_location="cpu", weights_only=True, mmap=True)["state"]["iteration"])
    return 0


def run_study(out, *, cut: int = CUT, entries: list[Entry] | None = None, budget_s: float = float("inf"),
              device="auto", progress: bool = True, log=print, clock=time.monotonic, data=None) -> dict:
    """Train each of ``entries`` (default :func:`plan`) to ``cut`` iterations in ``out`` (the campaign's folder
    layout), one after another, within ``budget_s`` seconds; a run stopped by the budget or by Ctrl-C/SIGTERM
    keeps a checkpoint and the same call continues it. Returns {entry key: iteration reached}."""
    out, dev = Path(out), pick_device(device)
    entries = plan() if entries is None else entries
    if cut <= 0 or any(cut > e.run.train.iters for e in entries):
        raise ValueError(f"cut must be between 1 and the runs' {entries[0].run.train.iters} iterations, got {cut}")
    t0, reached = clock(), {}
    with StopRequest() as stop:
        for e in tqdm(entries, desc="precision study", disable=not progress):
            at = iteration(out, e)
            if at < cut and clock() - t0 < budget_s and not stop.requested:
                data = data or load_cifar10()
                trainer = cifar_trainer(e.run, run_dir(out, e).parent, dev, progress=progress, data=data)
                for _ in trainer.steps(stop_after=cut):
                    if clock() - t0 >= budget_s or stop.requested:
                        break
                trainer.stop()
                at = trainer.state.iteration
                if log:
                    log(f"precision study: {e.label} in {e.run.train.precision} at {at:,} of {cut:,} on "
                        f"{device_name(dev)}")
            reached[e.key] = at
    return reached


# ----------------------------------------------------------------------------- the records and the decision

def record(out: Path, e: Entry) -> dict | None:
    """A run's record as the study keeps it (its curve, where each stretch trained, its identity)."""
    out = Path(out)
    d = run_dir(out, e)
    if (d / RESULT).exists():
        src = json.loads((d / RESULT).read_text())
        state = {"history": src["history"], "pieces": src.get("pieces", []), "iteration": e.run.train.iters}
    elif (d / CHECKPOINT).exists():
        state = torch.load(d / CHECKPOINT, map_location="cpu", weights_only=True)["state"]
    else:
        return None
    calls = (json.loads((out / "campaign.json").read_text()).get("calls", [])
             if (out / "campaign.json").exists() else [])  # where a stretch from before pieces kept a device ran
    state["pieces"] = resolve_pieces(state.get("pieces", []), calls)
    if (d / RESULT).exists() and len(state["pieces"]) <= 1 and not any(p["device"] for p in state["pieces"]):
        # one stretch of unrecorded device (or a result from before pieces): the device the result names
        state["pieces"] = [{"device": src["provenance"].get("device"), "start": 0, "end": e.run.train.iters,
                            "device_from": "the result's provenance"}]
    return {"net": e.run.name, "depth": e.run.depth, "residual": e.run.residual, "seed": e.run.train.seed,
            "policy": e.run.train.precision, "label": POLICIES[e.run.train.precision].label, "group": e.group,
            "slug": e.run.slug, "iteration": int(state["iteration"]), "history": state["history"],
            "pieces": state["pieces"], "identity": e.run.identity}


def entry_of(identity: dict) -> Entry:
    """The campaign entry of a stored run, rebuilt from its ``identity`` (and checked to have exactly it)."""
    spec, train = identity["spec"], dict(identity["train"], milestones=tuple(identity["train"]["milestones"]))
    run = CifarRun(spec["depth"], spec["residual"], spec["shortcut"], TrainConfig(**train), **identity["data"])
    if run.identity != identity:
        raise ValueError(f"cannot rebuild the run of {identity}")
    return Entry(run, "main" if run.train.precision == TABLE6_PRECISION else run.train.precision)


def stored_entries(out) -> list[Entry]:
    """Every run stored in the campaign folder ``out`` (finished or not), as entries."""
    entries = []
    for d in sorted(Path(out).glob("runs/*/*")):
        if (d / RESULT).exists():
            identity = json.loads((d / RESULT).read_text())["identity"]
        elif (d / CHECKPOINT).exists():
            identity = torch.load(d / CHECKPOINT, map_location="cpu", weights_only=True, mmap=True)["identity"]
        else:
            continue
        if identity.get("spec", {}).get("kind") == "cifar" and "precision" in identity["train"]:
            entries.append(entry_of(identity))
    return entries


def export(out, entries: list[Entry] | None = None, dest=None, command: str | None = None, cut: int = CUT,
           note: str | None = None) -> Path:
    """Write the record of every run of ``entries`` (default: every run stored in ``out``) that has reached
    ``cut`` to ``dest`` (default results/precision/runs/), one JSON each, with a ``provenance.json`` beside
    them (the command, code, time, and ``note``: what the records alone do not say, e.g. where a restored run
    trained) and the figure (``early_error_by_depth.png``); an export into the project's results/precision
    also redraws the figure of every committed record there (the README's)."""
    dest = Path(dest) if dest else project_root() / "results" / "precision" / "runs"
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for e in stored_entries(out) if entries is None else entries:
        rec = record(Path(out), e)
        if rec is not None and early_error(rec, cut) is not None:
            atomic_write_json(dest / f"{e.group}__{e.run.slug}.json", rec)
            n += 1
    atomic_write_json(dest.parent / "provenance.json", {"command": command, "runs": n,
                                                        **provenance(pick_device("auto")),
                                                        **({"note": note} if note else {})})
    plot(load_records(dest), cut).savefig(dest.parent / "early_error_by_depth.png", dpi=110, bbox_inches="tight")
    root = project_root() / "results" / "precision"
    if root in dest.resolve().parents and dest.parent.resolve() != root:
        plot(all_records(root), cut).savefig(root / "early_error_by_depth.png", dpi=110, bbox_inches="tight")
    return dest


# ----------------------------------------------------------------------------- command line

def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m resnet_lib precision-study", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="build/campaign", help="the campaign folder the runs live in (default %(default)s)")
    ap.add_argument("--cut", type=int, default=CUT, help="iterations each run trains to (default %(default)s)")
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--policies", nargs="+", default=list(STUDY_POLICIES), choices=list(POLICIES))
    ap.add_argument("--budget-s", type=float, default=float("inf"), help="stop (with checkpoints) after this long")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--step", choices=("auto", "eager"), default="auto",
                    help="eager: no CUDA graph on a GPU (runs of their own, the CPU's code path), to tell the graph's "
                         "part in a gap between a GPU and a CPU")
    ap.add_argument("--export", nargs="?", const="", default=None,
                    help="then write the record of every run in --out that reached --cut to this folder (default "
                         "results/precision/runs), with the figure and provenance beside it")
    ap.add_argument("--note", default=None, help="with --export: a line for provenance.json saying what the records "
                                                 "alone do not (e.g. where a restored run trained)")
    a = ap.parse_args(argv)
    if a.step == "eager" and pick_device(a.device).type != "cuda":
        ap.error("--step eager is for a GPU: on a CPU every step is eager already (leave --step out)")
    entries = plan(a.nets, a.seeds, a.policies, a.step)
    for e in entries:  # a policy the device cannot run fails here, before anything trains
        resolve(pick_device(a.device), e.run.train.precision)
    run_study(a.out, cut=a.cut, entries=entries, budget_s=a.budget_s, device=a.device)
    if a.export is not None:
        dest = export(a.out, None, a.export or None, command="python -m resnet_lib precision-study " + " ".join(argv),
                      cut=a.cut, note=a.note)  # every run stored in --out that reached the cut, the study's and the campaign's
        print(f"records written to {dest}")
    for policy, (status, why) in decide([r for e in stored_entries(a.out) if (r := record(Path(a.out), e))],
                                        a.cut).items():
        print(f"{policy}: {status}\n  " + "\n  ".join(why))
    return 0
