"""The precision study (issue #25): which precision policies keep the paper's depth trend.

The shipped bf16 runs' error rose with depth past ResNet-32 where Table 6's falls, and the gap opened while
the learning rate was 0.1. So each run of the study is the paper's full recipe (Section 4.2; the warm-up for
110 layers) stopped at ``cut`` iterations (default 4k, inside the lr-0.1 phase), for the same nets, seeds,
initialisations and data order in every policy (``base.precision``): only the precision differs. A study run
*is* the paper-scale run of its net, seed and policy (the same identity, in the campaign's folder layout), so
the campaign continues it to 64k where that policy is Table 6's.

What is compared: the training error over iterations ``cut/2``-``cut`` (the curve point at ``cut`` of the
paper's 2k-iteration evaluations), as a function of depth, per policy, over seeds. The rule (:func:`decide`):
fp32 is the paper's precision and faithful by definition; another policy is *faithful* when, for ResNet-56
and ResNet-110, its early training error is not worse than fp32's by more than the interval of
``evidence.compare`` (twice the standard error over at least two seeds each); *not faithful* when it is;
*undecided* while a net has fewer than two seeds in it or in fp32. ``base.precision.AUTO`` and the campaign's
``TABLE6_PRECISION`` are the fastest faithful policy (:func:`chosen`), so fp32 until another is shown faithful.
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
from . import evidence
from .campaign import StopRequest, run_dir
from .campaign_sets import TABLE6_PRECISION, Entry, paper_run
from .cifar_runs import cifar_trainer

NETS = {"ResNet-20": (20, True), "ResNet-56": (56, True), "ResNet-110": (110, True), "plain-56": (56, False)}
DECIDING = ("ResNet-56", "ResNet-110")   # the nets whose depth trend the shipped bf16 runs lost
CUT = 4_000                               # iterations: inside the lr-0.1 phase, where the gap opened
STUDY_POLICIES = ("fp32", "bf16", "bf16-conv")   # and "tf32" on a GPU
FAITHFUL, NOT_FAITHFUL, UNDECIDED = "faithful", "not faithful", "undecided"


def study_entry(net: str, seed: int, policy: str) -> Entry:
    """The paper-scale run of ``net``, ``seed`` in ``policy``, in the campaign's group for that policy
    ("main" for Table 6's policy)."""
    if net not in NETS:
        raise ValueError(f"unknown net {net!r}; the study's nets are {', '.join(NETS)}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; the study compares named policies: {', '.join(POLICIES)}")
    depth, residual = NETS[net]
    return Entry(paper_run(depth, residual, seed, 1.0, 0, 0, policy), "main" if policy == TABLE6_PRECISION else policy)


def plan(nets=tuple(NETS), seeds=(1, 2), policies=STUDY_POLICIES) -> list[Entry]:
    """The study's runs in the order they are trained: seed by seed, net by net, every policy of one net and
    seed together (so that each finished group is a same-seed comparison)."""
    return [study_entry(n, s, p) for s in seeds for n in nets for p in policies]


def iteration(out: Path, e: Entry) -> int:
    d = run_dir(out, e)
    if (d / RESULT).exists():
        return e.run.train.iters
    if (d / CHECKPOINT).exists():
        return int(torch.load(d / CHECKPOINT, map_location="cpu", weights_only=True, mmap=True)["state"]["iteration"])
    return 0


def run_study(out, *, cut: int = CUT, entries: list[Entry] | None = None, budget_s: float = float("inf"),
              device="auto", progress: bool = True, log=print, clock=time.monotonic) -> dict:
    """Train each of ``entries`` (default :func:`plan`) to ``cut`` iterations in ``out`` (the campaign's folder
    layout), one after another, within ``budget_s`` seconds; a run stopped by the budget or by Ctrl-C/SIGTERM
    keeps a checkpoint and the same call continues it. Returns {entry key: iteration reached}."""
    out, dev = Path(out), pick_device(device)
    entries = plan() if entries is None else entries
    if cut <= 0 or any(cut > e.run.train.iters for e in entries):
        raise ValueError(f"cut must be between 1 and the runs' {entries[0].run.train.iters} iterations, got {cut}")
    t0, data, reached = clock(), None, {}
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
    d = run_dir(out, e)
    if (d / RESULT).exists():
        src = json.loads((d / RESULT).read_text())
        state = {"history": src["history"], "pieces": src.get("pieces", []), "iteration": e.run.train.iters}
    elif (d / CHECKPOINT).exists():
        state = torch.load(d / CHECKPOINT, map_location="cpu", weights_only=True)["state"]
    else:
        return None
    net = next(n for n, (depth, res) in NETS.items() if (depth, res) == (e.run.depth, e.run.residual))
    return {"net": net, "depth": e.run.depth, "residual": e.run.residual, "seed": e.run.train.seed,
            "policy": e.run.train.precision, "label": POLICIES[e.run.train.precision].label, "group": e.group,
            "slug": e.run.slug, "iteration": int(state["iteration"]), "history": state["history"],
            "pieces": state.get("pieces", []), "identity": e.run.identity}


def export(out, entries: list[Entry], dest=None, command: str | None = None) -> Path:
    """Write every started run's record to ``dest`` (default results/precision/runs/), one JSON each, and a
    ``provenance.json`` beside them (the command, code, device, time)."""
    dest = Path(dest) if dest else project_root() / "results" / "precision" / "runs"
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for e in entries:
        rec = record(Path(out), e)
        if rec is not None and rec["history"]["iteration"]:
            atomic_write_json(dest / f"{e.group}__{e.run.slug}.json", rec)
            n += 1
    atomic_write_json(dest.parent / "provenance.json", {"command": command, "runs": n,
                                                        **provenance(torch.device("cpu"))})
    return dest


def load_records(root=None) -> list[dict]:
    root = Path(root) if root else project_root() / "results" / "precision" / "runs"
    return [json.loads(p.read_text()) for p in sorted(root.glob("*.json"))]


def early_error(rec: dict, cut: int = CUT) -> float | None:
    """Training error (%) over the stretch that ends at ``cut`` (the curve point there); None before it."""
    h = rec["history"]
    return 100 * h["train_err"][h["iteration"].index(cut)] if cut in h["iteration"] else None


def early_errors(records: list[dict], cut: int = CUT) -> dict:
    """{(net, policy): [early training error of each seed that reached ``cut``]}, seeds in order."""
    out: dict = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        if (v := early_error(r, cut)) is not None:
            out.setdefault((r["net"], r["policy"]), []).append(v)
    return out


def decide(records: list[dict], cut: int = CUT) -> dict:
    """{policy: (status, [one sentence per deciding net])} for every policy but fp32 (see the module docstring)."""
    errs = early_errors(records, cut)
    out = {}
    for policy in sorted({r["policy"] for r in records} - {"fp32"}):
        verdicts = {net: evidence.compare(f"{net} in fp32", errs.get((net, "fp32"), []), f"{net} in {policy}",
                                          errs.get((net, policy), [])) for net in DECIDING}
        if any(v.status == evidence.SHOWN for v in verdicts.values()):
            status = NOT_FAITHFUL  # worse than fp32 beyond the interval in a deep net
        elif all(v.interval is not None for v in verdicts.values()):
            status = FAITHFUL      # both nets measured over seeds, neither worse beyond the interval
        else:
            status = UNDECIDED
        out[policy] = (status, [v.text for v in verdicts.values()])
    return out


def chosen(decision: dict, cost_ms: dict[str, float]) -> str:
    """The fastest faithful policy by ``cost_ms`` (policy -> ms per iteration on one device kind); fp32, the
    paper's, is faithful by definition."""
    faithful = ["fp32"] + [p for p, (status, _) in decision.items() if status == FAITHFUL]
    return min(faithful, key=lambda p: cost_ms.get(p, float("inf")) if p != "fp32" else cost_ms.get(p, 0.0))


def table_rows(records: list[dict], cut: int = CUT) -> list[dict]:
    """Net by policy: early training error mean ± std (n seeds), and the gap to fp32."""
    errs, rows = early_errors(records, cut), []
    for net in NETS:
        ref = errs.get((net, "fp32"))
        for policy in [p for p in POLICIES if (net, p) in errs]:
            m, s = evidence.mean_std(errs[(net, policy)])
            gap = "" if policy == "fp32" or not ref else f"{m - evidence.mean_std(ref)[0]:+.2f}"
            rows.append({"net": net, "policy": policy, f"train err {cut // 2 // 1000}k-{cut // 1000}k (%)":
                         f"{m:.2f}" + (f" ± {s:.2f}" if s is not None else ""), "seeds": len(errs[(net, policy)]),
                         "vs fp32 (points)": gap})
    return rows


def plot(records: list[dict], cut: int = CUT):
    """Early training error against depth, one line per policy (ResNets), error bars over seeds; plain-56 as
    a separate marker at its depth."""
    import matplotlib.pyplot as plt
    errs = early_errors(records, cut)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, policy in enumerate(p for p in POLICIES if any(k[1] == p for k in errs)):
        pts = [(NETS[n][0], evidence.mean_std(errs[(n, policy)])) for n in NETS
               if NETS[n][1] and (n, policy) in errs]
        if pts:
            x = [d + (i - 1) * 1.5 for d, _ in pts]
            ax.errorbar(x, [m for _, (m, _) in pts], yerr=[s or 0 for _, (_, s) in pts], marker="o", capsize=3,
                        label=f"ResNets, {policy}")
        if ("plain-56", policy) in errs:
            m, s = evidence.mean_std(errs[("plain-56", policy)])
            ax.errorbar([56 + (i - 1) * 1.5 + 4], [m], yerr=[s or 0], marker="s", ls="none", capsize=3,
                        color=ax.lines[-1].get_color() if pts else None, mfc="none", label=f"plain-56, {policy}")
    ax.set(xlabel="depth (layers)", ylabel=f"training error, iterations {cut // 2:,}-{cut:,} (%)",
           title="Early training error by depth and precision (bars: std over seeds)", xticks=[20, 56, 110])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


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
    ap.add_argument("--export", nargs="?", const="", default=None,
                    help="then write the runs' records to this folder (default results/precision/runs)")
    a = ap.parse_args(argv)
    entries = plan(a.nets, a.seeds, a.policies)
    for e in entries:  # a policy the device cannot run fails here, before anything trains
        resolve(pick_device(a.device), e.run.train.precision)
    run_study(a.out, cut=a.cut, entries=entries, budget_s=a.budget_s, device=a.device)
    if a.export is not None:
        dest = export(a.out, entries, a.export or None, command="python -m resnet_lib precision-study " + " ".join(argv))
        print(f"records written to {dest}")
    for policy, (status, why) in decide([r for e in entries if (r := record(Path(a.out), e))], a.cut).items():
        print(f"{policy}: {status}\n  " + "\n  ".join(why))
    return 0
