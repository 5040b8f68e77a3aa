"""What the scorecard reads (``experiments.scorecard``): the shipped results and the reader's outputs, each
file tolerated when missing or in a form not known here (it then counts as "not yet run")."""
from __future__ import annotations

import json
import math
from pathlib import Path

NB = {"02": "02_architectures", "03": "03_cifar10_plain_vs_residual", "04": "04_layer_responses",
      "05": "05_imagenet_recipe", "06": "06_localization", "07": "07_detection"}


def read_json(path: Path):
    """A JSON file's content, or None when it is missing or unreadable (another part of the project may be
    writing a new kind of file; the scorecard then says "not yet run")."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def shipped_cifar(root: Path, group: str = "main") -> list[tuple[dict, str]]:
    """(record, file) of each shipped CIFAR-10 run of ``group`` (``results/cifar10/runs``)."""
    out = []
    for p in sorted((root / "results" / "cifar10" / "runs").glob(f"{group}__*.json")):
        r = read_json(p)
        if isinstance(r, dict) and {"spec", "final", "config"} <= set(r):
            out.append((r, _rel(p, root)))
    return out


def by_net(runs, metric: str, *, iters: int | None = None, shortcut: str | None = "A") -> dict:
    """``{(residual, depth): ([values in %], [files])}`` of CIFAR run records; ``iters`` keeps one length."""
    by = {}
    for r, f in runs:
        try:
            s, value = r["spec"], 100 * float(r["final"][metric])
            key = (bool(s["residual"]), int(s["depth"]))
        except (KeyError, TypeError, ValueError):  # a record of another form: not counted
            continue
        if (iters and r["config"].get("iters") != iters) or (shortcut and s.get("shortcut", "A") != shortcut):
            continue
        vals, files = by.setdefault(key, ([], []))
        vals.append(value)
        files.append(f)
    return by


def quarter_runs(root: Path) -> list[tuple[dict, str]]:
    """The H200's quarter-schedule runs of Fig. 6's four nets (``results/h200/*_it16000_*.json``)."""
    out = []
    for p in sorted((root / "results" / "h200").glob("*_it*.json")):
        r = read_json(p)
        if isinstance(r, dict) and {"spec", "final", "config"} <= set(r):
            out.append((r, _rel(p, root)))
    return out


def shown(path: str) -> str:
    """A reader's output file as the text names it: ``outputs/<notebook>/results.json`` (the output folder's own
    name), not wherever the folder happens to lie."""
    p = Path(path)
    return "/".join(p.parts[-3:]) if len(p.parts) >= 3 else p.as_posix()


def reader_results(outputs: Path | None, stem: str) -> tuple[dict | None, str]:
    """The reader's ``outputs/<stem>/results.json`` (None without it) and its path."""
    if outputs is None:
        return None, ""
    path = Path(outputs) / stem / "results.json"
    rec = read_json(path)
    return (rec if isinstance(rec, dict) else None), path.as_posix()


def reader_cifar(outputs: Path | None) -> tuple[list[tuple[dict, str]], str]:
    """Notebook 03's runs from its results table, as minimal run records (one seed each)."""
    rec, path = reader_results(outputs, NB["03"])
    runs = []
    for row in (rec or {}).get("table") or []:
        try:
            spec = {"depth": int(row["depth"]), "residual": bool(row["residual"]), "shortcut": "A"}
            final = {"train_err": row["train_err_pct"] / 100, "test_err": row["test_err_pct"] / 100}
            runs.append(({"spec": spec, "final": final, "config": {"iters": row.get("iters")}}, path))
        except (KeyError, TypeError, ValueError):
            continue
    return runs, path


def _median(xs) -> float | None:
    """The median of a net's layer stds; NaN when one is not finite (``compare`` then calls the net diverged),
    None when they are not numbers."""
    try:
        v = sorted(float(x) for x in xs)
    except (TypeError, ValueError):
        return None
    if not v or not all(math.isfinite(x) for x in v):
        return math.nan if v else None
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2


def _medians(nets: dict) -> dict[str, float]:
    return {n: m for n, m in ((n, _median(v)) for n, v in nets.items()) if m is not None}


def response_sources(root: Path, outputs: Path | None) -> list[tuple[str, dict, list[str]]]:
    """(scale, {net name: median response std}, files) of the shipped fully trained nets and the reader's 04."""
    out = []
    shipped = read_json(root / "results" / "cifar10" / "responses.json")
    nets = shipped.get("nets") if isinstance(shipped, dict) else None
    if isinstance(nets, dict):
        med = _medians({n: v["stds"] for n, v in nets.items() if isinstance(v, dict) and isinstance(v.get("stds"), list)})
        out.append(("fully trained nets (paper's recipe, shipped)", med, ["results/cifar10/responses.json"]))
    rec, path = reader_results(outputs, NB["04"])
    stds = (rec or {}).get("stds")
    if isinstance(stds, dict):
        med = _medians({n: v for n, v in stds.items() if isinstance(v, list)})
        out.append((f"your run (notebook 04's nets, toy scale unless trained at the paper's; `{shown(path)}`)", med, [path]))
    return out


def _net_name(rec: dict) -> str | None:
    name = rec.get("name") or rec.get("net")
    spec = rec.get("spec")
    if not name and isinstance(spec, dict) and "depth" in spec:
        name = f"{'ResNet' if spec.get('residual') else 'plain'}-{spec['depth']}"
    if not isinstance(name, str):
        return None
    low = name.lower().replace("_", "-")
    kind = "ResNet" if low.startswith("resnet") else "plain" if low.startswith("plain") else None
    digits = "".join(c for c in low.split("-")[-1] if c.isdigit()) or "".join(c for c in low if c.isdigit())
    return f"{kind}-{digits}" if kind and digits else None


def _top1(rec: dict) -> float | None:
    """A run's validation top-1 error in %, from the keys a run record may use (a fraction is scaled)."""
    final = rec.get("final") if isinstance(rec.get("final"), dict) else {}
    for v in (final.get("val_top1_err"), final.get("val_err"), final.get("test_err"), final.get("top1_err"),
              rec.get("val_top1_err"), rec.get("top1_err"), rec.get("val_err")):
        if isinstance(v, (int, float)) and math.isfinite(v):
            return 100 * v if v <= 1 else float(v)
    return None


def _records(data) -> list[dict]:
    """Run records in a JSON file: the file itself, or the dicts of its ``runs`` list/dict."""
    if isinstance(data, dict) and isinstance(data.get("runs"), (list, dict)):
        runs = data["runs"]
        return [r for r in (runs.values() if isinstance(runs, dict) else runs) if isinstance(r, dict)]
    return [data] if isinstance(data, dict) else []


def imagenet_runs(root: Path, outputs: Path | None) -> list[tuple[str, dict, dict]]:
    """(scale, {net: [top-1 % per seed]}, {net: [files]}) from shipped Tiny ImageNet runs
    (``results/imagenet_tiny/``) and the reader's notebook 05."""
    sources = [("Tiny ImageNet runs (shipped)", sorted((root / "results" / "imagenet_tiny").rglob("*.json")))]
    rec, path = reader_results(outputs, NB["05"])
    if rec is not None:
        sources.append((f"your run (notebook 05, Tiny ImageNet, toy scale; `{shown(path)}`)", [Path(path)]))
    out = []
    for scale, paths in sources:
        errs, files = {}, {}
        for p in paths:
            for r in _records(read_json(p)):
                name, err = _net_name(r), _top1(r)
                if name and err is not None:
                    errs.setdefault(name, []).append(err)
                    files.setdefault(name, []).append(_rel(p, root))
        out.append((scale, errs, files))
    return out


def n_val(rec: dict) -> int | None:
    p = rec.get("parameters") if isinstance(rec.get("parameters"), dict) else {}
    n = rec.get("n_val") or (p.get("NUM_CLASSES", 0) * p.get("VAL_PER_CLASS", 0))
    return int(n) if n else None
