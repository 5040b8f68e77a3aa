"""How long the main job's notebooks take with their defaults, on each kind of CPU, from committed runs.

``make run`` writes ``outputs/timings.json`` (``notebooks.run_record``: seconds per notebook, the total,
the CPU model, the path it took and each notebook's parameters). A copy of such a file from a quiet machine
goes into ``results/timings/`` (one per kind of CPU); the time table of docs/speed.md and each notebook's check cell read
them, so no time in the text is typed by hand. A notebook's time is shown only while its defaults are the ones
it was measured with; after a change of defaults the table says so until the file is measured again.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..base.paths import project_root

FOLDER = Path("results") / "timings"


def kind(rec: dict) -> str:
    """The CPU kind a run took: the bf16 path (AVX-512 bf16 / AMX) or the fp32 path (AVX2 or a stand-in)."""
    path = rec["cpu_path"]
    if path.get("fast_bf16"):
        return "bf16 path (AVX-512 bf16)"
    stand_in = rec.get("environment", {}).get("ONEDNN_MAX_CPU_ISA", "").upper() == "AVX2"
    return "fp32 path (AVX2" + (", stood in for with ONEDNN_MAX_CPU_ISA=AVX2)" if stand_in else ")")


def records(root: Path | None = None) -> list[dict]:
    """The committed full-default main-job runs (``tiny`` runs are left out), bf16 path first."""
    folder = (root or project_root()) / FOLDER
    recs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted((r for r in recs if not r.get("tiny")), key=lambda r: not r["cpu_path"].get("fast_bf16"))


def measured(rec: dict, notebook: str, defaults: dict) -> float | None:
    """The notebook's seconds in ``rec`` if it ran with ``defaults`` (the notebook's current ones), else None."""
    if notebook not in rec["notebooks_s"] or rec.get("parameters", {}).get(notebook) != defaults:
        return None
    return rec["notebooks_s"][notebook]


def _fmt(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def expected_text(notebook: str, defaults: dict, root: Path | None = None) -> str:
    """One line for a notebook's check cell: what its ``defaults`` took on each kind of CPU."""
    parts = [f"{_fmt(t)} on the {kind(r)}" for r in records(root) if (t := measured(r, notebook, defaults)) is not None]
    if not parts:
        return ""
    return (f"With its defaults this notebook took {' and '.join(parts)} of a 2-core CPU "
            f"(measured, {FOLDER.as_posix()}/).")


def readme_table(root: Path, defaults: dict) -> str:
    """The time table of docs/speed.md: seconds per notebook and the whole main job, one column per kind of CPU;
    ``defaults`` are the notebooks' current parameters, ``{stem: {name: value}}``."""
    recs = records(root)
    if not recs:
        return "No timed main-job run is committed yet."
    cell = lambda t: "defaults changed since: measure again" if t is None else _fmt(t)  # noqa: E731
    lines = ["| notebook | " + " | ".join(kind(r) for r in recs) + " |", "|---|" + "---|" * len(recs)]
    names = list(dict.fromkeys(n for r in recs for n in r["notebooks_s"]))  # every notebook any run timed
    lines += [f"| {n} | " + " | ".join(cell(measured(r, n, defaults.get(n))) if n in r["notebooks_s"] else
                                     "not in this run" for r in recs) + " |" for n in names]
    lines.append("| **the main job (`make run`)** | "
                 + " | ".join(f"**{_fmt(r['total_s'])}** ({len(r['notebooks_s'])} notebooks)" for r in recs) + " |")
    lines += ["", "Measured on: " + "; ".join(
        f"{kind(r)}: {r['cpu_model']}, {r['cpus']} CPUs, load average {r['load_avg_at_end']:.1f} at the end, "
        f"commit {r.get('git')}, {r['finished_utc'][:10]}" for r in recs) + "."]
    return "\n".join(lines)
