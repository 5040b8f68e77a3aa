"""Atomic writes and provenance: nothing half-written, every result says where it came from."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torchvision

from .. import __version__
from .device import cpu_path


def _atomic_replace(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    data = json.dumps(obj, indent=1, default=_json_default).encode()
    return _atomic_replace(Path(path), lambda f: f.write(data))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    return _atomic_replace(Path(path), lambda f: torch.save(obj, f))


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        return dataclasses.asdict(o)
    raise TypeError(f"cannot store {type(o).__name__} in JSON")


def git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
        if rev.returncode == 0:
            return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def device_name(device: torch.device | str | None = None) -> str:
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(device: torch.device | str | None = None, **extra) -> dict:
    """Who, what and where: library versions, code revision, device, time. Merge ``extra`` in."""
    return {
        "resnet_lib": __version__,
        "git": git_revision(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": device_name(device),
        "host": platform.node(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **({"cpu_path": cpu_path()} if torch.device(device or "cpu").type == "cpu" else {}),
        **extra,
    }


def save_results(out_dir: str | os.PathLike, name: str, rows: list[dict] | None = None, **data) -> Path:
    """Write ``<out_dir>/<name>/results.json`` for a notebook or run.

    ``rows`` are the comparison lines that the main job gathers into one summary table:
    ``{"quantity": str, "ours": float|str, "paper": float|str|None, "unit": str, "note": str}``.
    """
    rec = {"name": name, "rows": rows or [], "provenance": provenance(data.pop("device", None)), **data}
    return atomic_write_json(Path(out_dir) / name / "results.json", rec)


def load_results(out_dir: str | os.PathLike, name: str) -> dict:
    return json.loads((Path(out_dir) / name / "results.json").read_text())
