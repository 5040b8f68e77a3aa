"""Running the notebooks: parameter checks, papermill execution, and the results summary.

Conventions every notebook in ``notebooks/`` follows (tests enforce them):

- one code cell tagged ``parameters`` that holds only ``NAME = literal`` lines;
- a parameter ``OUT_DIR`` (a path, relative to ``notebooks/``) under which it writes
  ``<OUT_DIR>/<notebook stem>/results.json`` (``resnet_lib.base.io.save_results``) and its figures;
- notebook metadata ``{"resnet_lib": {"tiny": {...}}}``: parameters that make it run in seconds,
  used by the tests and by ``--tiny`` runs.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from queue import Empty

from ..base.errors import UserError
from ..base.io import atomic_write_json, utc_now
from ..base.paths import output_dir, project_root
from .params import check_parameters, read_parameters
from .params import type_ok as _type_ok  # noqa: F401  (sweep's per-item check uses it)


class NotebookFailed(UserError):
    """A notebook raised; the message is its exception and where the executed copy is."""


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


def notebook_parameters(path: str | os.PathLike) -> dict:
    """``{name: default}`` from the ``parameters`` cell (:func:`resnet_lib.runner.params.read_parameters`),
    also refusing a line that papermill would not see."""
    out = read_parameters(path)
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


@contextmanager
def _local_kernel():
    """papermill options that run the kernel over IPC sockets in a private folder (mode 0700), removed
    afterwards. Over TCP, ipykernel logs "Kernel is running over TCP without encryption" once per notebook
    in the main job's log, and its ports are open to every local user (the messages are signed, not
    encrypted). IPC needs Unix sockets; elsewhere the kernel keeps TCP."""
    if os.name != "posix":
        yield {}
        return
    from traitlets.config import Config
    folder = tempfile.mkdtemp(prefix="resnet-kernel-")
    cfg = Config()
    cfg.KernelManager.transport = "ipc"
    cfg.KernelManager.ip = os.path.join(folder, "kernel")
    try:
        yield {"config": cfg}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
    with _local_kernel() as kernel:
        pm.execute_notebook(str(path), str(executed), parameters=p, cwd=str(path.parent), kernel_name="python3",
                            progress_bar=progress, report_mode=False, **kernel)
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


def run_record(timings: dict, total_s: float, tiny: bool, parameters: dict | None = None) -> dict:
    """What a main-job run took, with the machine and the CPU path it took and each notebook's parameters
    (``{stem: {name: value}}``; the docs' times come from such files, only while the defaults stay these)."""
    import platform

    from ..base.device import cpu_path
    from ..base.io import git_revision
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"notebooks_s": timings, "total_s": round(total_s, 1), "tiny": tiny, "parameters": parameters or {},
            "cpu_model": model,
            "cpus": os.cpu_count(), "cpu_path": cpu_path(), "load_avg_at_end": os.getloadavg()[0],
            "environment": {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS") if k in os.environ},
            "git": git_revision(), "finished_utc": utc_now()}


def run_all(out_dir: str | os.PathLike | None = None, tiny: bool = False, only: list[str] | None = None) -> Path:
    """The main job: every notebook in order with its defaults (or tiny parameters), then the summary."""
    import papermill as pm
    out = output_dir(out_dir)
    books = [find_notebook(n) for n in only] if only else list_notebooks()
    timings, start = {}, time.perf_counter()
    for nb in books:
        t0 = time.perf_counter()
        print(f"=== {nb.name}", flush=True)
        try:
            run_notebook(nb, out, tiny=tiny)
        except pm.PapermillExecutionError as e:
            raise NotebookFailed(f"{nb.name} stopped in its cell [{e.exec_count}] with {e.ename}: {e.evalue}\n"
                                 f"The executed copy, with the traceback, is {out / 'executed' / nb.name}") from e
        timings[nb.stem] = round(time.perf_counter() - t0, 1)
        print(f"=== {nb.name}: {timings[nb.stem]} s", flush=True)
    params = {nb.stem: read_parameters(nb) for nb in books} if not tiny else {}
    atomic_write_json(out / "timings.json", run_record(timings, time.perf_counter() - start, tiny, params))
    summary = gather_summary(out)
    print(summary.read_text())
    return summary
