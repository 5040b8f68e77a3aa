"""A sweep's grid: ``NAME=V1,V2`` specs parsed into literal values, expanded into points, each point's name
and folder, and which axes are seeds (averaged over in the tables)."""
from __future__ import annotations

import ast
import itertools
import json
import re
from pathlib import Path


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


def point_dir(out: Path, name: str) -> Path:
    return out / "points" / name
