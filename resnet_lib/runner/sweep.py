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
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from resnet_lib.runner import notebooks

from ..base.io import atomic_write_json
from ..base.paths import output_dir
from .sweep_grid import expand, fit_to_defaults, parse_grid, parse_value, point_dir, point_name, seed_axes
from .sweep_tables import MAX_PANELS, gather

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
        pdir = point_dir(out, name)
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
