"""A sweep's results gathered: every point's rows (``sweep_runs.csv``), mean / std / min / max over the seeds
beside the paper (``sweep.csv``, ``sweep.md``), and one figure (``sweep.png``)."""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

from matplotlib.figure import Figure

from .sweep_grid import expand, point_dir, point_name, seed_axes

_SKIP_FIELDS = {"name", "rows", "provenance"}  # results.json fields that are not per-run numbers
MAX_PANELS = 6  # quantities drawn in sweep.png; the tables hold them all


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _unit(field: str) -> str:
    return "%" if field.endswith("_pct") else "s" if field.endswith("_s") else ""


def _restates_axis(field: str, grid: dict) -> bool:
    """``depth`` in a run record restates the grid axis ``DEPTHS``; it is not a measurement."""
    names = {a.lower() for a in grid} | {a.lower().rstrip("s") for a in grid}
    return field.lower() in names


def _flat_records(value) -> bool:
    return (isinstance(value, list) and value and all(isinstance(d, dict) for d in value)
            and all(not isinstance(v, (dict, list)) for d in value for v in d.values()))


def point_rows(res: dict, grid: dict) -> list[dict]:
    """What one point recorded, as ``{run, quantity, unit, ours, paper, note}`` rows:

    - its ``rows`` (the comparison beside the paper), as saved;
    - top-level numbers (e.g. ``wall_s``);
    - per-run tables: any top-level list of flat records (03's ``table``: one record per trained
      net). Each numeric field is a quantity, ``paper_<field>`` its paper value, and the record's
      text fields name the run (``plain-20``).
    """
    out = [{"run": "", "quantity": r["quantity"], "unit": r.get("unit", ""), "ours": r.get("ours"),
            "paper": r.get("paper"), "note": r.get("note", "")} for r in res.get("rows", [])]
    for key, value in res.items():
        if key in _SKIP_FIELDS:
            continue
        if _is_number(value):
            out.append({"run": "", "quantity": key, "unit": _unit(key), "ours": value, "paper": None,
                        "note": "per-run field"})
        elif _flat_records(value):
            for i, rec in enumerate(value):
                label = "/".join(v for v in rec.values() if isinstance(v, str)) or f"{key}[{i}]"
                out += [{"run": label, "quantity": f, "unit": _unit(f), "ours": v, "paper": rec.get(f"paper_{f}"),
                         "note": f"from {key}"}
                        for f, v in rec.items()
                        if _is_number(v) and not f.startswith("paper_") and not _restates_axis(f, grid)]
    return out


def collect(out: Path, stem: str, grid: dict[str, list]) -> list[dict]:
    """One record per finished point, run and quantity: the grid values, then what it recorded.
    Where every point holds a single run, the point names it and ``run`` is left empty, so the
    same quantity lines up across points (one curve over depth, not one dot per net name)."""
    records = []
    for params in expand(grid):
        pdir = point_dir(out, point_name(params))
        res_path = pdir / stem / "results.json"
        if not ((pdir / "point.json").exists() and res_path.exists()):
            continue
        records += [{**params, **r} for r in point_rows(json.loads(res_path.read_text()), grid)]
    per_point = {}
    for r in records:
        key = (tuple(json.dumps(r[k]) for k in grid), r["note"], r["quantity"])
        per_point[key] = per_point.get(key, 0) + 1
    if per_point and max(per_point.values()) == 1:
        for r in records:
            r["run"] = ""
    return records


def aggregate(records: list[dict], grid: dict, over: list[str]) -> list[dict]:
    """Mean, spread and range of ``ours`` over the ``over`` axes, per setting of the others and quantity."""
    keys = [k for k in grid if k not in over]
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(json.dumps(r[k]) for k in keys) + (r["run"], r["quantity"], r["unit"]), []).append(r)
    rows = []
    for group in groups.values():
        vals = [r["ours"] for r in group]
        nums = [v for v in vals if _is_number(v)]
        row = {**{k: group[0][k] for k in keys}, **({"run": group[0]["run"]} if group[0]["run"] else {}),
               "quantity": group[0]["quantity"], "unit": group[0]["unit"], "n": len(vals)}
        if nums and len(nums) == len(vals):
            row.update(mean=statistics.fmean(nums), std=statistics.stdev(nums) if len(nums) > 1 else None,
                       min=min(nums), max=max(nums))
        else:
            row.update(mean=" / ".join(sorted({str(v) for v in vals})), std=None, min=None, max=None)
        papers = {json.dumps(r["paper"]) for r in group}
        row["paper"] = group[0]["paper"] if len(papers) == 1 else " / ".join(sorted(papers))
        rows.append(row)
    return rows


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _write_csv(path: Path, rows: list[dict]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})


def _write_markdown(path: Path, stem: str, rows: list[dict], over: list[str]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    spread = f"over {', '.join(over)}" if over else "one run per setting"
    lines = [f"# Sweep of {stem}: mean and spread {spread}", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    path.write_text("\n".join(lines) + "\n")


def gather(out: str | Path, stem: str, grid: dict[str, list], *, over: list[str] | None = None,
           plot: list[str] | None = None) -> tuple[Path, Path | None]:
    """Write sweep_runs.csv, sweep.csv, sweep.md and sweep.png from the finished points."""
    out = Path(out)
    over = seed_axes(grid, over)
    records = collect(out, stem, grid)
    if not records:
        raise FileNotFoundError(f"no finished grid point under {out}/points; run the sweep first "
                                "(without --gather-only), or check the failures it printed")
    summary = aggregate(records, grid, over)
    _write_csv(out / "sweep_runs.csv", records)
    _write_csv(out / "sweep.csv", summary)
    _write_markdown(out / "sweep.md", stem, summary, over)
    figure = plot_sweep(records, grid, over, out / "sweep.png", stem, quantities=plot)
    return out / "sweep.md", figure


def _x_axis(grid: dict, over: list[str]) -> str | None:
    free = [k for k in grid if k not in over]
    numeric = [k for k in free if all(_is_number(v) or (isinstance(v, list) and len(v) == 1
                                                        and _is_number(v[0])) for v in grid[k])]
    return (numeric or free or [None])[0]


def _scalar(v):
    return v[0] if isinstance(v, list) and len(v) == 1 else v


def plot_sweep(records: list[dict], grid: dict, over: list[str], path: Path, stem: str,
               quantities: list[str] | None = None) -> Path | None:
    """One panel per numeric quantity: mean +- std over seeds against the x axis, seeds as dots,
    the paper's number as an open marker. Returns None when no quantity is numeric."""

    numeric = _by_coverage([r for r in records if _is_number(r["ours"])], grid, over)
    if quantities:
        missing = [q for q in quantities if q not in numeric]
        if missing:
            raise ValueError(f"--plot {missing}: not a numeric quantity of this sweep; they are {numeric}")
        numeric = quantities
    numeric = numeric[:MAX_PANELS]
    if not numeric:
        return None
    x_key = _x_axis(grid, over)
    series_keys = [k for k in grid if k not in over and k != x_key]
    ncols = min(3, len(numeric))
    nrows = math.ceil(len(numeric) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, q in zip(axes, numeric):
        _panel(ax, [r for r in records if r["quantity"] == q and _is_number(r["ours"])], x_key, series_keys, grid)
        unit = next((r["unit"] for r in records if r["quantity"] == q), "")
        ax.set_title(q, fontsize=10)
        ax.set_ylabel(unit or "value")
        ax.set_xlabel(x_key or "")
    for ax in axes[len(numeric):]:
        ax.set_visible(False)
    n_seeds = math.prod(len(grid[k]) for k in over) if over else 1
    spread = f"mean ± std over {', '.join(over)} (up to {n_seeds} runs a setting; dots: single runs)" if over \
        else "one run a setting"
    fig.suptitle(f"{stem}: {spread}; open markers: the paper", fontsize=10)
    fig.savefig(path, dpi=110)
    return path


def _by_coverage(recs: list[dict], grid: dict, over: list[str]) -> list[str]:
    """The quantities worth a panel, best first: those recorded at the most settings (they make
    curves), rows the notebook saved before per-run fields such as wall time. Quantities that
    never change (an iteration count) and, where curves exist, single-setting ones are left to
    the table."""
    settings: dict[str, set] = {}
    values: dict[str, set] = {}
    for r in recs:
        settings.setdefault(r["quantity"], set()).add(tuple(json.dumps(r[k]) for k in grid if k not in over)
                                                       + (r["run"],))
        values.setdefault(r["quantity"], set()).add(r["ours"])
    per_run = {r["quantity"] for r in recs if r["note"] == "per-run field"}
    ranked = sorted(settings, key=lambda q: (-len(settings[q]), q in per_run))  # stable: first seen first
    if ranked and len(settings[ranked[0]]) > 1:
        ranked = [q for q in ranked if len(settings[q]) > 1]
    varying = [q for q in ranked if len(values[q]) > 1]
    return varying or ranked


def _panel(ax, recs: list[dict], x_key: str | None, series_keys: list[str], grid: dict) -> None:
    categorical = x_key is not None and not all(_is_number(_scalar(v)) for v in grid[x_key])
    xs_order = [json.dumps(v) for v in grid[x_key]] if x_key else ['""']
    xpos = lambda v: xs_order.index(json.dumps(v)) if categorical else _scalar(v)  # noqa: E731
    series: dict[tuple, list[dict]] = {}
    for r in recs:
        series.setdefault(tuple(json.dumps(r[k]) for k in series_keys) + (r["run"],), []).append(r)
    for skey, srecs in series.items():
        parts = [f"{k}={_cell(_scalar(json.loads(v)))}" for k, v in zip(series_keys, skey)] + [skey[-1]]
        label = ", ".join(p for p in parts if p) or "runs"
        by_x: dict[str, list[dict]] = {}
        for r in srecs:
            by_x.setdefault(json.dumps(r[x_key]) if x_key else '""', []).append(r)
        xs = sorted(by_x, key=lambda k: xpos(json.loads(k)) if x_key else 0)
        X = [xpos(json.loads(k)) if x_key else 0 for k in xs]
        means = [statistics.fmean(r["ours"] for r in by_x[k]) for k in xs]
        stds = [statistics.stdev([r["ours"] for r in by_x[k]]) if len(by_x[k]) > 1 else 0.0 for k in xs]
        line = ax.errorbar(X, means, yerr=stds, marker="o", capsize=3, label=label)
        color = line[0].get_color()
        for x, k in zip(X, xs):
            ax.scatter([x] * len(by_x[k]), [r["ours"] for r in by_x[k]], s=10, color=color, alpha=0.35)
        paper = [(x, by_x[k][0]["paper"]) for x, k in zip(X, xs) if _is_number(by_x[k][0]["paper"])]
        if paper:
            ax.plot(*zip(*paper), linestyle=":", marker="o", mfc="none", color=color)
    if x_key is not None:
        ticks = range(len(xs_order)) if categorical else [_scalar(v) for v in grid[x_key]]
        ax.set_xticks(list(ticks), [_cell(_scalar(json.loads(v))) for v in xs_order])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
