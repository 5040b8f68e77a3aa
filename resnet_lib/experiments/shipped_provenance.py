"""What trained where, when, in which precision and with which code: the shipped runs' own records as tables.

Each finished run in ``results/cifar10/runs/*.json`` carries ``pieces`` (``engine.state``): one per stretch of
its iterations, with the device, torch, precision, code revision and start time of the call that trained it.
Runs finished before pieces were kept have none; their one row comes from the run's ``provenance`` (device,
torch, code at the end, time it finished). The campaign's state (``results/campaign/table6_state.tgz``) keeps
the calls log, which also covers the runs still in progress. ``python -m resnet_lib readme`` writes both
tables into ``results/cifar10/README.md``; nothing there is typed by hand.
"""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

UNKNOWN = "not recorded"


def _cell(v) -> str:
    return UNKNOWN if v in (None, "") else str(v).replace("|", "\\|")


def _run_rows(path: Path, rel: str) -> list[str]:
    r = json.loads(path.read_text())
    prov, pieces = r.get("provenance") or {}, r.get("pieces") or []
    name = f"[{r['name']} seed {r['seed']}]({rel}) ({path.name.split('__')[0]})"
    if not pieces:  # trained before pieces were kept: the run's own provenance, as one stretch
        pieces = [{"device": prov.get("device"), "torch": prov.get("torch"), "git": prov.get("git"),
                   "start": 0, "end": r["config"]["iters"], "wall_s": r.get("wall_s"), "since_utc": None}]
    rows = []
    for i, p in enumerate(pieces):
        device = _cell(p.get("device")) + (f" (from {p['device_from']})" if p.get("device_from") else "")
        code = p.get("git") or (f"{UNKNOWN} (the run's at the end: {prov['git']})" if prov.get("git") else None)
        wall = f"{p['wall_s']:,.0f}" if isinstance(p.get("wall_s"), (int, float)) else None
        finished = prov.get("time_utc") if i == len(pieces) - 1 else ""
        rows.append(f"| {name if i == 0 else ''} | {p['start']:,}-{p['end']:,} | {device} | {_cell(p.get('torch'))} | "
                    f"{_cell(p.get('precision') or r.get('precision'))} | {_cell(code)} | {_cell(p.get('since_utc'))} | "
                    f"{_cell(wall)} | {finished or ''} |")
    return rows


def runs_table(root: Path) -> str:
    """One row per piece of each finished run under ``root/results/cifar10/runs``."""
    runs = sorted((root / "results" / "cifar10" / "runs").glob("*.json"))
    if not runs:
        return "No finished run is shipped yet."
    lines = ["| run | iterations | device | torch | precision | code | started (UTC) | seconds | finished (UTC) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for path in runs:
        lines += _run_rows(path, f"runs/{path.name}")
    return "\n".join(lines)


def calls_table(root: Path) -> str:
    """Each call of the campaign (``campaign.json`` in ``results/campaign/table6_state.tgz``): where and when it
    ran, its budget, the iterations it trained (over all its runs) and how it stopped."""
    state = root / "results" / "campaign" / "table6_state.tgz"
    if not state.exists():
        return "No campaign state is shipped."
    with tarfile.open(state) as tar:
        member = next(m for m in tar.getmembers() if m.name.rstrip("/").endswith("campaign.json"))
        log = json.load(tar.extractfile(member))
    lines = ["| started (UTC) | device | torch | budget s | seconds | iterations trained | stopped |",
             "|---|---|---|---|---|---|---|"]
    for c in log.get("calls", []):
        secs = f"{c['seconds']:,.0f}" if isinstance(c.get("seconds"), (int, float)) else None
        lines.append(f"| {_cell(c.get('started_utc'))} | {_cell(c.get('device'))} | {_cell(c.get('torch'))} | "
                     f"{c.get('budget_s', 0):,.0f} | {_cell(secs)} | {c.get('iterations', 0):,} | "
                     f"{_cell(c.get('stopped') or 'killed (no record of how it ended)')} |")
    return "\n".join(lines)


def provenance_section(root: Path) -> str:
    """Both tables, as ``results/cifar10/README.md`` shows them."""
    return "\n".join(["Finished runs, one row per stretch of iterations (its `pieces`):", "", runs_table(root), "",
                      "The campaign's calls (`results/campaign/table6_state.tgz`, `campaign.json`), runs in progress "
                      "included:", "", calls_table(root)])
