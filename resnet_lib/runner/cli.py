"""Command-line entry points for the notebook runner (see ``resnet_lib.runner.notebooks``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import book, notebooks


def _params(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise SystemExit(f"-p expects NAME=VALUE (a Python/JSON literal), got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def run_notebooks(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m resnet_lib run-notebooks", description=notebooks.run_all.__doc__)
    ap.add_argument("--out", default=None, help="output folder (default: $RESNET_OUT or ./outputs)")
    ap.add_argument("--tiny", action="store_true", help="use each notebook's tiny parameters (seconds, for checks)")
    ap.add_argument("--only", nargs="*", help="notebook names or number prefixes, e.g. 03 04")
    a = ap.parse_args(argv)
    notebooks.run_all(a.out, tiny=a.tiny, only=a.only)
    print(f"book: {book.build(a.out)}")  # the executed notebooks as pages to read
    return 0


def parameterize(argv: list[str]) -> int:
    """Write each notebook with its parameters injected (papermill's own injection, no execution),
    for ``pytest --nbval-lax`` to execute."""
    from papermill.iorw import load_notebook_node, write_ipynb
    from papermill.parameterize import parameterize_notebook
    ap = argparse.ArgumentParser(prog="python -m resnet_lib parameterize", description=parameterize.__doc__)
    ap.add_argument("dest")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", default=None, help="OUT_DIR to inject (default: <dest>/outputs)")
    ap.add_argument("-p", nargs="*", default=[], metavar="NAME=VALUE")
    a = ap.parse_args(argv)
    dest = Path(a.dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    for nb in notebooks.list_notebooks():
        params = {**(notebooks.tiny_parameters(nb) if a.tiny else {}), **_params(a.p)}
        if "OUT_DIR" in notebooks.notebook_parameters(nb):
            params.setdefault("OUT_DIR", str(Path(a.out).resolve() if a.out else dest / "outputs"))
        notebooks.check_parameters(nb, params)
        node = parameterize_notebook(load_notebook_node(str(nb)), params)
        write_ipynb(node, str(dest / nb.name))
    print(f"wrote {len(notebooks.list_notebooks())} notebooks to {dest}")
    return 0
