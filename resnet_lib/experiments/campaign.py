"""A campaign: a named set of Section 4.2 runs trained within a time budget, resumable anywhere (issue #10).

GPU time comes in pieces (calls of a few minutes, on whichever machine is lent), so a campaign is
trained in *chunks*: each chunk is one ``run_cifar(..., stop_after=...)`` call that ends with a
checkpoint, sized from the speed measured so far on this device so that the next chunk ends before
the budget does. Called again with the same folder, on this machine or another, it continues from
the checkpoints, so every run ends bitwise where it would have ended uninterrupted (the engine's
resume contract; a CPU test checks it for a whole campaign).

Folder layout: ``DIR/campaign.json`` (the set, its options, the measured speeds and each call's
log) and ``DIR/runs/<group>/<run slug>/`` (the engine's checkpoint and result files).

Sets (order = the order of work when time is short, issue #10):
  table6     one seed of ResNet-20/32/44/56/110, then plain-20/32/44/56/110 (Fig. 6, Fig. 7's
             plain-110), then the further seeds of the ResNets (Table 6's mean and spread);
  precision  ResNet-20 in fp32 and in bf16 autocast, each seed of both (part 5 of the issue);
  smoke      ResNet-8 and plain-8: tiny, for tests and for checking a machine before real work.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..base.device import pick_device
from ..base.io import atomic_write_json, device_name
from ..data.cifar import load_cifar10
from ..engine.checkpoint import CHECKPOINT, RESULT
from .cifar_runs import CifarRun, paper_recipe, run_cifar
from .shipped import export_campaign

STATE = "campaign.json"
TABLE6_DEPTHS = (20, 32, 44, 56, 110)


@dataclass(frozen=True)
class Entry:
    """One run of a campaign and the group folder it lives in (runs that differ only in precision share
    a slug, so each precision has its own group)."""
    run: CifarRun
    group: str = "main"

    @property
    def key(self) -> str:
        return f"{self.group}/{self.run.slug}"

    @property
    def label(self) -> str:
        extra = "" if self.group == "main" else f" {self.group}"
        return f"{self.run.name}{extra} seed {self.run.train.seed}"


def _run(depth: int, residual: bool, seed: int, scale: float, subset: int, test_subset: int,
         amp: str = "auto") -> CifarRun:
    cfg = dataclasses.replace(paper_recipe(depth), seed=seed, amp=amp)
    if scale != 1:  # a shorter schedule of the same shape, still 32 curve points (the paper's: every 2k of 64k)
        cfg = cfg.scaled(scale)
        cfg = dataclasses.replace(cfg, eval_every=max(1, cfg.iters // 32), checkpoint_every=max(1, cfg.iters // 32))
    return CifarRun(depth, residual, "A", cfg, subset=subset, test_subset=test_subset)


def campaign_entries(name: str, seeds=(1, 2, 3), scale: float = 1.0, subset: int = 0,
                     test_subset: int = 0) -> list[Entry]:
    """The runs of set ``name`` in the order they are trained (see the module docstring)."""
    if scale <= 0 or scale > 1:
        raise ValueError(f"scale must be in (0, 1] (a fraction of the paper's 64k iterations), got {scale}")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    if name == "table6":
        first, rest = seeds[0], seeds[1:]
        mk = lambda d, res, s: _run(d, res, s, scale, subset, test_subset)
        runs = [mk(d, True, first) for d in TABLE6_DEPTHS] + [mk(d, False, first) for d in TABLE6_DEPTHS]
        runs += [mk(d, True, s) for s in rest for d in TABLE6_DEPTHS]
        return [Entry(r) for r in runs]
    if name == "precision":
        return [Entry(_run(20, True, s, scale, subset, test_subset, amp), group) for s in seeds
                for amp, group in (("off", "fp32"), ("bf16", "bf16"))]
    if name == "smoke":
        return [Entry(_run(8, residual, s, scale, subset, test_subset)) for s in seeds for residual in (True, False)]
    raise ValueError(f"unknown campaign {name!r}; the sets are {', '.join(SETS)}")


SETS = ("table6", "precision", "smoke")


# ----------------------------------------------------------------------------- progress and speed

def run_dir(out: Path, e: Entry) -> Path:
    return Path(out) / "runs" / e.group / e.run.slug


def iteration_of(out: Path, e: Entry) -> int:
    """How far a run has got: its iterations when finished, its checkpoint's iteration, else 0."""
    d = run_dir(out, e)
    if (d / RESULT).exists():
        return e.run.train.iters
    if (d / CHECKPOINT).exists():
        try:  # the checkpoint holds only tensors and plain containers: no pickle needed to read it
            return int(torch.load(d / CHECKPOINT, map_location="cpu", weights_only=True)["state"]["iteration"])
        except Exception as err:  # a damaged checkpoint: the engine's own check on resume names the fix
            raise ValueError(f"cannot read the checkpoint of {e.label} at {d / CHECKPOINT} ({err}); delete it "
                             "to retrain that run from the start") from err
    return 0


def _cost_units(e: Entry) -> float:
    """Relative cost of one iteration: proportional to depth (ms per iteration on an H200, issue #10:
    2.42 / 13.2 for 20 / 110 layers, 5.45x for 5.5x the depth)."""
    return e.run.depth * e.run.train.batch_size / 128


class Speeds:
    """Seconds per cost unit measured on each device, so that chunks can be sized before they run."""

    def __init__(self, table: dict | None = None):
        self.table = table or {}  # device name -> [cost units trained, seconds]

    def add(self, device: str, e: Entry, iters: int, seconds: float) -> None:
        units, secs = self.table.get(device, [0.0, 0.0])
        self.table[device] = [units + iters * _cost_units(e), secs + seconds]

    def per_iter(self, device: str, e: Entry) -> float | None:
        units, secs = self.table.get(device, [0.0, 0.0])
        return secs / units * _cost_units(e) if units else None


# ----------------------------------------------------------------------------- the campaign

def _check_state(state: dict, want: dict, path: Path) -> None:
    have = {k: state.get(k) for k in want}
    if have != want:
        raise ValueError(f"{path} belongs to another campaign ({have}), not {want}. Continue it with its own "
                         "options, or give this campaign another --out folder.")


def run_campaign(name: str, out, budget_s: float, *, seeds=(1, 2, 3), scale: float = 1.0, subset: int = 0,
                 test_subset: int = 0, device="auto", data=None, max_chunk: int = 16_000, probe_iters: int = 200,
                 startup_s: float | None = None, margin_s: float | None = None, clock=time.monotonic,
                 progress: bool = True, log=print) -> dict:
    """Train campaign ``name`` in ``out`` for at most ``budget_s`` seconds (of ``clock``) and return its
    summary (``summarize``). Chunks are sized from the measured speed to end ``margin_s`` before the
    budget; a run never measured on this device first trains a short probe of ``probe_iters``."""
    t0 = clock()
    out = Path(out)
    entries = campaign_entries(name, seeds, scale, subset, test_subset)
    want = {"name": name, "seeds": list(seeds), "scale": scale, "subset": subset, "test_subset": test_subset}
    state_path = out / STATE
    state = json.loads(state_path.read_text()) if state_path.exists() else {**want, "speeds": {}, "calls": []}
    _check_state(state, want, state_path)
    dev = pick_device(device)
    dev_name = device_name(dev)
    speeds = Speeds(state["speeds"])
    startup = (3.0 if dev.type == "cuda" else 0.5) if startup_s is None else startup_s
    margin = max(5.0, 0.03 * budget_s) if margin_s is None else margin_s
    at = {e.key: iteration_of(out, e) for e in entries}
    call = {"device": dev_name, "budget_s": budget_s, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "iterations": 0, "stopped": "finished"}
    state["calls"].append(call)
    total = sum(e.run.train.iters for e in entries)
    bar = tqdm(total=total, initial=sum(at.values()), desc=f"campaign {name}", unit="it", disable=not progress,
               dynamic_ncols=True)
    for e in entries:
        iters = e.run.train.iters
        while at[e.key] < iters:
            left = budget_s - (clock() - t0) - margin - startup
            rate = speeds.per_iter(dev_name, e)
            n = min(iters - at[e.key], max_chunk)
            if rate is None:
                n = min(n, probe_iters)
            else:
                n = min(n, math.floor(left / (1.1 * rate)))
            if left <= 0 or n < 1:
                call["stopped"] = "budget"
                break
            if data is None:
                data = load_cifar10()
            t = clock()
            res = run_cifar(e.run, out / "runs" / e.group, device=dev, progress=False, data=data,
                            stop_after=at[e.key] + n if at[e.key] + n < iters else None)
            done = res.get("interrupted_at", iters)
            speeds.add(dev_name, e, done - at[e.key], clock() - t)
            bar.update(done - at[e.key])
            call["iterations"] += done - at[e.key]
            at[e.key] = done
            state["speeds"] = speeds.table
            atomic_write_json(state_path, state)
        if call["stopped"] == "budget":
            break
    bar.close()
    call["seconds"] = round(clock() - t0, 1)
    atomic_write_json(state_path, state)
    summary = summarize(entries, at, speeds, dev_name)
    if log:
        log(format_summary(name, summary, call))
    return summary


def summarize(entries: list[Entry], at: dict, speeds: Speeds, dev_name: str) -> dict:
    """Which runs are done, in progress (with their iteration) and left, and the time still needed on
    ``dev_name`` at the speed measured there (None where nothing was measured on it yet)."""
    rows, left_s = [], 0.0
    for e in entries:
        it, iters = at[e.key], e.run.train.iters
        rate = speeds.per_iter(dev_name, e)
        need = None if rate is None else (iters - it) * rate
        left_s = None if (need is None and it < iters) or left_s is None else left_s + (need or 0)
        rows.append({"run": e.label, "key": e.key, "iteration": it, "iters": iters,
                     "status": "done" if it >= iters else ("in progress" if it else "left"), "time_left_s": need})
    count = {s: sum(r["status"] == s for r in rows) for s in ("done", "in progress", "left")}
    return {"rows": rows, "count": count, "time_left_s": left_s, "device": dev_name}


def format_summary(name: str, summary: dict, call: dict | None = None) -> str:
    c = summary["count"]
    lines = [f"campaign {name}: {c['done']} done, {c['in progress']} in progress, {c['left']} left"]
    if call:
        lines[0] += f" (this call: {call['iterations']} iterations in {call.get('seconds', 0):.0f} s, " \
                    f"{'stopped by its budget' if call['stopped'] == 'budget' else 'nothing more to do'})"
    for r in summary["rows"]:
        est = "" if r["time_left_s"] in (None, 0) else f"  ~{r['time_left_s'] / 60:.1f} min left"
        lines.append(f"  {r['status']:11s} {r['run']:28s} {r['iteration']:>6d}/{r['iters']}{est}")
    t = summary["time_left_s"]
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
    ap.add_argument("--device", default="auto")
    ap.add_argument("--export", default=None, metavar="DEST", help="then export the finished runs into DEST "
                    "(results/cifar10: JSON per run, Fig. 7 responses, fp16 weights)")
    a = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds takes comma-separated integers, e.g. 1,2,3; got {a.seeds!r}")
    run_campaign(a.name, a.out, a.budget_s, seeds=seeds, scale=a.scale, subset=a.subset, test_subset=a.test_subset,
                 device=a.device)
    if a.export:
        written = export_campaign(a.out, a.export, device=a.device)
        print(f"exported {len(written['runs'])} finished runs into {a.export}")
    return 0
