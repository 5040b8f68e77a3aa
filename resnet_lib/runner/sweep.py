"""Batch runs: one notebook over a grid of parameters, gathered into one table and one figure.

    python -m resnet_lib sweep 03 -g DEPTH=20,56 -g PLAIN=true,false -g SEED=0,1 --tiny --out outputs/sweep03

Each grid point is one papermill run of the notebook, with its own ``OUT_DIR`` and an executed
copy whose name says its parameters (``executed/<stem>__DEPTH=20_PLAIN=true_SEED=0.ipynb``).
A point that already finished with the same parameters is not run again unless ``--force``.
Every point's parameters are checked against the notebook's ``parameters`` cell before the
first one starts, so a misspelt name or a wrong type fails at once (papermill alone only warns).

The rows each point saved (``resnet_lib.base.io.save_results``) are gathered into

- ``sweep_runs.csv``: one line per point and quantity, as recorded;
- ``sweep.csv`` / ``sweep.md``: mean, standard deviation, min and max over the seeds
  (the ``--over`` parameter, by default any grid parameter whose name contains SEED),
  beside the paper's number;
- ``sweep.png``: each numeric quantity against the first numeric grid parameter, one line per
  setting of the others, error bars one standard deviation over seeds, seeds as dots and the
  paper's numbers as open markers.
"""
from __future__ import annotations

import argparse
import ast
import csv
import itertools
import json
import math
import re
import statistics
import sys
from pathlib import Path

from matplotlib.figure import Figure
from tqdm.auto import tqdm

from resnet_lib.runner import notebooks

from ..base.io import atomic_write_json
from ..base.paths import output_dir

_SKIP_FIELDS = {"name", "rows", "provenance"}  # results.json fields that are not per-run numbers
MAX_PANELS = 6  # quantities drawn in sweep.png; the tables hold them all


# ---------------------------------------------------------------- the grid

def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes, so ``[20,56],[110]`` is two values."""
    parts, depth, quote, cur = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def parse_value(text: str):
    """A JSON or Python literal (``20``, ``0.1``, ``true``, ``False``, ``[20, 56]``, ``"cpu"``);
    anything else is taken as a string, as ``-p`` of run-notebooks does."""
    lowered = {"true": True, "false": False, "none": None, "null": None}
    if text.lower() in lowered:
        return lowered[text.lower()]
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            pass
    return text


def parse_grid(specs: list[str]) -> dict[str, list]:
    """``["DEPTH=20,56", "PLAIN=true,false"]`` -> ``{"DEPTH": [20, 56], "PLAIN": [True, False]}``."""
    grid: dict[str, list] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or not values.strip():
            raise ValueError(f"grid axis {spec!r} should read NAME=V1,V2,... (for example -g DEPTH=20,56)")
        if name in grid:
            raise ValueError(f"grid axis {name} is given twice; put all its values in one -g {name}=...")
        grid[name] = [parse_value(v) for v in _split_top_level(values)]
    return grid


def fit_to_defaults(defaults: dict, params: dict) -> dict:
    """A scalar given where the notebook's default is a list becomes a one-element list, so
    ``-g DEPTHS=20,56`` sweeps ``DEPTHS=[20]`` and ``DEPTHS=[56]``."""
    return {k: [v] if isinstance(defaults.get(k), list) and not isinstance(v, (list, tuple)) else v
            for k, v in params.items()}


def expand(grid: dict[str, list]) -> list[dict]:
    """Every combination, the last axis varying fastest (as nested loops in the order given)."""
    return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return "-".join(_fmt(x) for x in v)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", str(v))


def point_name(params: dict) -> str:
    """``DEPTH=20_PLAIN=true_SEED=0``: safe as a file name, readable as the point's parameters."""
    return "_".join(f"{k}={_fmt(v)}" for k, v in params.items())


def seed_axes(grid: dict, over: list[str] | None = None) -> list[str]:
    """The axes averaged over: ``over`` when given, else those whose name contains SEED."""
    if over is None:
        return [k for k in grid if "SEED" in k.upper()]
    unknown = [k for k in over if k not in grid]
    if unknown:
        raise ValueError(f"--over {', '.join(unknown)}: not a grid axis; the axes are {', '.join(grid)}")
    return list(over)


# ---------------------------------------------------------------- running

def plan(notebook: Path, grid: dict[str, list], fixed: dict | None = None, tiny: bool = False) -> list[dict]:
    """The full parameters of each point, every one checked before anything runs."""
    defaults = notebooks.notebook_parameters(notebook)
    overlap = sorted(set(grid) & set(fixed or {}))
    if overlap:
        raise ValueError(f"{', '.join(overlap)} is both a grid axis (-g) and a fixed parameter (-p); keep one")
    base = {**(notebooks.tiny_parameters(notebook) if tiny else {}), **(fixed or {})}
    points = [{**base, **fit_to_defaults(defaults, p)} for p in expand(grid)]
    for p in points:
        _check_items(notebook, defaults, p)  # first: its fix is written as a sweep's -g option
        notebooks.check_parameters(notebook, p)
    names = [point_name({k: p[k] for k in grid}) for p in points]
    if len(set(names)) != len(names):
        raise ValueError("two grid points get the same name; use values that differ after "
                         "replacing characters other than letters, digits, '.', '+', '-'")
    return points


def _check_items(notebook: Path, defaults: dict, params: dict) -> None:
    """check_parameters looks at a list as a whole; a sweep value like ``DEPTHS=abc`` becomes
    ``["abc"]``, so also check each item against the default's items (``[20, 56]``: ints)."""
    for name, value in params.items():
        default = defaults.get(name)
        if not (isinstance(default, list) and default and isinstance(value, list)):
            continue
        if len({type(d) for d in default}) != 1:
            continue
        bad = [v for v in value if not notebooks._type_ok(default[0], v)]
        if bad:
            raise ValueError(f"{notebook.name}: parameter {name} holds {type(default[0]).__name__} values like its default "
                             f"{default!r}; got {bad!r}. Give them as e.g. -g {name}={','.join(map(str, default))}")


def _point_dir(out: Path, name: str) -> Path:
    return out / "points" / name


def _run_params(defaults: dict, params: dict, pdir: Path, force: bool) -> dict:
    """What the notebook gets: the point's parameters, its own OUT_DIR, and with ``--force``
    ``FORCE=True`` for notebooks that keep finished training runs (so they train again). FORCE
    is not part of the point's identity: a forced point counts as done for the next plain run."""
    extra = {"OUT_DIR": str(pdir)} if "OUT_DIR" in defaults else {}
    if force and "FORCE" in defaults and "FORCE" not in params:
        extra["FORCE"] = True
    return {**params, **extra}


def _is_done(pdir: Path, stem: str, params: dict) -> bool:
    marker = pdir / "point.json"
    if not (marker.exists() and (pdir / stem / "results.json").exists()):
        return False
    return json.loads(marker.read_text()).get("params") == params


def run_sweep(notebook: str | Path, grid: dict[str, list], out: str | Path | None = None, *,
              fixed: dict | None = None, tiny: bool = False, force: bool = False,
              over: list[str] | None = None, plot: list[str] | None = None, progress: bool = True) -> dict:
    """Run every grid point not yet done (all with ``force``), then gather. Returns
    ``{"ran": [...], "skipped": [...], "failed": {name: error}, "table": Path, "figure": Path|None}``."""

    nb = notebooks.find_notebook(str(notebook))
    out = output_dir(out or output_dir() / "sweeps" / nb.stem).resolve()
    seed_axes(grid, over)  # a bad --over fails before the first run, like a bad parameter
    points = plan(nb, grid, fixed, tiny)
    defaults = notebooks.notebook_parameters(nb)
    ran, skipped, failed = [], [], {}
    bar = tqdm(points, desc=f"sweep {nb.stem}", unit="point", disable=not progress)
    for params in bar:
        name = point_name({k: params[k] for k in grid})
        bar.set_postfix_str(name)
        pdir = _point_dir(out, name)
        if not force and _is_done(pdir, nb.stem, params):
            skipped.append(name)
            continue
        run_params = _run_params(defaults, params, pdir, force)
        (pdir / "point.json").unlink(missing_ok=True)
        (pdir / nb.stem / "results.json").unlink(missing_ok=True)  # a failed run must not look finished
        try:
            notebooks.run_notebook(nb, pdir, params=run_params, progress=False,
                                   executed=out / "executed" / f"{nb.stem}__{name}.ipynb")
        except Exception as e:  # noqa: BLE001 -- one failed point must not lose the others
            failed[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            continue
        if not (pdir / nb.stem / "results.json").exists():
            failed[name] = f"it ran but saved no {nb.stem}/results.json under its OUT_DIR"
            continue
        atomic_write_json(pdir / "point.json", {"notebook": nb.stem, "grid": {k: params[k] for k in grid},
                                                "params": params})
        ran.append(name)
    try:
        table, figure = gather(out, nb.stem, grid, over=over, plot=plot)
    except FileNotFoundError:  # every point failed: the caller reports the failures
        table, figure = None, None
    return {"ran": ran, "skipped": skipped, "failed": failed, "table": table, "figure": figure}


# ---------------------------------------------------------------- gathering

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
        pdir = _point_dir(out, point_name(params))
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


# ---------------------------------------------------------------- command line

def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m resnet_lib sweep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook", help="number prefix, stem or path, e.g. 03")
    ap.add_argument("-g", "--grid", action="append", default=[], metavar="NAME=V1,V2",
                    help="one axis of the grid (repeat); values are JSON/Python literals, e.g. -g SEED=0,1")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a parameter held fixed at every point (repeat)")
    ap.add_argument("--tiny", action="store_true", help="start from the notebook's tiny parameters (seconds a point)")
    ap.add_argument("--force", action="store_true", help="run points again even when already done")
    ap.add_argument("--gather-only", action="store_true", help="run nothing; rebuild the table and figure")
    ap.add_argument("--over", action="append", default=None, metavar="NAME",
                    help="axis to average over (repeat); default: axes whose name contains SEED")
    ap.add_argument("--plot", action="append", default=None, metavar="QUANTITY",
                    help=f"quantity to draw (repeat); default: the first {MAX_PANELS} numeric ones")
    ap.add_argument("--out", default=None, help="sweep folder (default: <outputs>/sweeps/<notebook stem>)")
    a = ap.parse_args(argv)
    try:
        grid = parse_grid(a.grid)
        if not grid:
            raise ValueError("give at least one grid axis, e.g. -g SEED=0,1")
        fixed = {}
        for spec in a.param:
            name, sep, value = spec.partition("=")
            if not sep:
                raise ValueError(f"-p expects NAME=VALUE, got {spec!r}")
            fixed[name.strip()] = parse_value(value.strip())
        if a.gather_only:
            nb = notebooks.find_notebook(a.notebook)
            out = output_dir(a.out or output_dir() / "sweeps" / nb.stem)
            table, figure = gather(out, nb.stem, grid, over=a.over, plot=a.plot)
            result = {"ran": [], "skipped": [], "failed": {}, "table": table, "figure": figure}
        else:
            result = run_sweep(a.notebook, grid, a.out, fixed=fixed, tiny=a.tiny, force=a.force,
                               over=a.over, plot=a.plot)
    except (ValueError, FileNotFoundError) as e:
        print(f"sweep: {e}", file=sys.stderr)
        return 2
    print(f"ran {len(result['ran'])}, already done {len(result['skipped'])}, failed {len(result['failed'])}")
    for name, err in result["failed"].items():
        print(f"  FAILED {name}: {err}", file=sys.stderr)
    if result["table"]:
        print(Path(result["table"]).read_text())
        print(f"table: {result['table']}\nfigure: {result['figure']}")
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
