"""Running the notebooks: parameter checks, papermill execution, and the results summary.

Conventions every notebook in ``notebooks/`` follows (tests enforce them):

- one code cell tagged ``parameters`` that holds only ``NAME = literal`` lines;
- a parameter ``OUT_DIR`` (a path, relative to ``notebooks/``) under which it writes
  ``<OUT_DIR>/<notebook stem>/results.json`` (``resnet_lib.base.io.save_results``) and its figures;
- notebook metadata ``{"resnet_lib": {"tiny": {...}}}``: parameters that make it run in seconds,
  used by the tests and by ``--tiny`` runs.
"""
from __future__ import annotations

import ast
import json
import logging
import os
import time
from pathlib import Path
from queue import Empty

from ..base.io import atomic_write_json
from ..base.paths import output_dir, project_root


def notebook_dir() -> Path:
    return project_root() / "notebooks"


def list_notebooks(folder: str | os.PathLike | None = None) -> list[Path]:
    """The numbered notebooks, in reading order."""
    return sorted(Path(folder or notebook_dir()).glob("[0-9][0-9]_*.ipynb"))


def find_notebook(name: str) -> Path:
    """``"03"``, ``"03_cifar10_plain_vs_residual"`` or a path."""
    p = Path(name)
    if p.suffix == ".ipynb" and p.exists():
        return p
    hits = [nb for nb in list_notebooks() if nb.stem == name or nb.stem.startswith(name)]
    if len(hits) != 1:
        known = ", ".join(nb.stem for nb in list_notebooks())
        raise ValueError(f"notebook {name!r} matches {len(hits)} notebooks; known: {known}")
    return hits[0]


def _read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def parameters_cell(nb: dict) -> dict | None:
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) > 1:
        raise ValueError("more than one cell is tagged 'parameters'; papermill needs exactly one")
    return tagged[0] if tagged else None


def notebook_parameters(path: str | os.PathLike) -> dict:
    """``{name: default}`` from the ``parameters`` cell. Raises if the cell holds anything but
    ``NAME = literal`` assignments (comments are fine)."""
    cell = parameters_cell(_read(Path(path)))
    if cell is None:
        raise ValueError(f"{path}: no cell is tagged 'parameters'")
    src = "".join(cell["source"])
    out = {}
    for node in ast.parse(src).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{path}: the parameters cell must hold only NAME = literal lines, found: "
                             f"{ast.unparse(node)!r}")
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise ValueError(f"{path}: parameter {node.targets[0].id} is not a literal: {ast.unparse(node.value)}") from None
    _check_papermill_sees(path, out)
    return out


def _check_papermill_sees(path, params: dict) -> None:
    """papermill parses the cell with its own line regex; a name it cannot parse (e.g. a comment holding
    '=') is silently treated as unknown. Refuse such a cell rather than let overrides misbehave."""

    import papermill as pm
    logging.getLogger("papermill.translators").setLevel(logging.CRITICAL)
    seen = set(pm.inspect_notebook(str(path)))
    missing = [k for k in params if k not in seen]
    if missing:
        raise ValueError(f"{path}: papermill cannot parse the parameter line(s) for {missing}; keep each line "
                         "`NAME = literal  # comment` with no '=' inside the comment")


def tiny_parameters(path: str | os.PathLike) -> dict:
    return dict(_read(Path(path)).get("metadata", {}).get("resnet_lib", {}).get("tiny", {}))


def _type_ok(default, value) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def check_parameters(path: str | os.PathLike, params: dict) -> None:
    """Fail before a notebook starts on an unknown parameter name or a value of the wrong type
    (papermill itself only warns, then runs for minutes with the default)."""
    known = notebook_parameters(path)
    problems = []
    for name, value in params.items():
        if name not in known:
            close = [k for k in known if k.lower() == name.lower()]
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"unknown parameter {name!r}{hint}")
        elif not _type_ok(known[name], value):
            problems.append(f"parameter {name} should be {type(known[name]).__name__} like its default "
                            f"{known[name]!r}, got {type(value).__name__} {value!r}")
    if problems:
        raise ValueError(f"{Path(path).name}: " + "; ".join(problems) +
                         f". Its parameters are: {', '.join(f'{k}={v!r}' for k, v in known.items())}")


def _poll_kernel_replies_in_slices() -> None:
    """Work around a missed wake-up in jupyter_client's async ZMQ channel (nbclient issue #312): under
    load, papermill can wait forever for a reply the kernel already sent (seen here on widget cells).
    Polling in 0.5 s slices up to the caller's timeout turns a permanent hang into a half-second one."""

    from jupyter_client.channels import AsyncZMQSocketChannel
    if getattr(AsyncZMQSocketChannel.get_msg, "_sliced", False):
        return
    original = AsyncZMQSocketChannel.get_msg

    async def get_msg(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            try:
                return await original(self, timeout=step)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    get_msg._sliced = True
    AsyncZMQSocketChannel.get_msg = get_msg


def run_notebook(path: str | os.PathLike, out_dir: str | os.PathLike | None = None, params: dict | None = None,
                 tiny: bool = False, executed: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Execute one notebook with papermill; returns the executed copy's path
    (default ``<out_dir>/executed/<stem>.ipynb``)."""
    import papermill as pm

    path = Path(path)
    out = output_dir(out_dir).resolve()
    p = {**(tiny_parameters(path) if tiny else {}), **(params or {})}
    if "OUT_DIR" in notebook_parameters(path):
        p.setdefault("OUT_DIR", str(out))
    check_parameters(path, p)
    executed = Path(executed) if executed else out / "executed" / path.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    _poll_kernel_replies_in_slices()
    pm.execute_notebook(str(path), str(executed), parameters=p, cwd=str(path.parent), kernel_name="python3",
                        progress_bar=progress, report_mode=False)
    return executed


def gather_summary(out_dir: str | os.PathLike | None = None) -> Path:
    """One table of every notebook's comparison rows beside the paper's: ``summary.md`` and ``summary.json``."""
    out = output_dir(out_dir)
    recs = [json.loads(p.read_text()) for p in sorted(out.glob("*/results.json"))]
    lines = ["# Results beside the paper", "",
             "| notebook | quantity | ours | paper | note |", "|---|---|---|---|---|"]
    def fmt(v) -> str:  # one table cell; a '|' inside it would split the Markdown row
        text = "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
        return text.replace("|", "\\|")
    for rec in recs:
        for r in rec.get("rows", []):
            unit = r.get("unit", "")
            quantity = fmt(r["quantity"]) + (f" ({unit})" if unit else "")
            lines.append(f"| {rec['name']} | {quantity} | {fmt(r.get('ours'))} | {fmt(r.get('paper'))} "
                         f"| {fmt(r.get('note', ''))} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    atomic_write_json(out / "summary.json", recs)
    return out / "summary.md"


def run_all(out_dir: str | os.PathLike | None = None, tiny: bool = False, only: list[str] | None = None) -> Path:
    """The main job: every notebook in order with its defaults (or tiny parameters), then the summary."""
    out = output_dir(out_dir)
    books = [find_notebook(n) for n in only] if only else list_notebooks()
    timings = {}
    for nb in books:
        t0 = time.perf_counter()
        print(f"=== {nb.name}", flush=True)
        run_notebook(nb, out, tiny=tiny)
        timings[nb.stem] = round(time.perf_counter() - t0, 1)
        print(f"=== {nb.name}: {timings[nb.stem]} s", flush=True)
    atomic_write_json(out / "timings.json", timings)
    summary = gather_summary(out)
    print(summary.read_text())
    return summary
