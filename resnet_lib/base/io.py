"""Atomic writes and provenance: nothing half-written, every result says where it came from."""
from __future__ import annotations

import dataclasses
import errno
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
from .device import cpu_has_fast_bf16, cpu_path
from .errors import UserError


class OutputNotWritable(UserError):
    """The output folder cannot be created or written to."""


class WriteFailed(OSError):
    """An atomic write failed (e.g. the disk is full); the file it was replacing is untouched."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that a killed atomic write left in ``folder``
    (``.<name>.<pid>.<random>.tmp`` whose writing process is gone); returns them."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        parts = tmp.name.split(".")
        pid = next((int(p) for p in reversed(parts[:-2]) if p.isdigit()), None)
        if pid is None or (pid != os.getpid() and _pid_alive(pid)):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def ensure_writable_dir(folder: str | os.PathLike, fix: str = "choose another folder") -> Path:
    """Create ``folder`` and prove it writable with a probe file, so that a bad output folder is
    reported at once, not after hours of training at the first checkpoint."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".write-test.{os.getpid()}.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except (FileExistsError, NotADirectoryError) as e:
        file = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise OutputNotWritable(f"cannot use {folder} as an output folder: {file} is a file, not a folder. "
                                f"Fix: {fix}.") from e
    except OSError as e:
        raise OutputNotWritable(f"cannot write to the output folder {folder}: {e.strerror or e}. "
                                f"Fix: {fix}, or make this one writable.") from e
    return folder


class _RecordingWriter:
    """A file wrapper that remembers the OSError of a failed write: torch.save turns it into an
    unreadable ``RuntimeError: [enforce fail at inline_container.cc]``, and we want the real reason."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, b):
        try:
            return self.f.write(b)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        self.f.flush()


def _atomic_replace(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the pid in the name lets clean_stale_temps tell a killed writer's leftovers from a live one's
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    out = None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files, readable as the umask allows
        with os.fdopen(fd, "wb") as f:
            out = _RecordingWriter(f)
            write(out)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        err = out.error if out is not None and out.error is not None else e
        if isinstance(err, OSError) and not isinstance(err, WriteFailed):
            kept = f"the previous {path} is untouched" if path.exists() else f"{path} was not written"
            raise WriteFailed(err.errno, f"could not write {path}: {err.strerror or err} "
                                         f"(errno {errno.errorcode.get(err.errno, err.errno)}). Nothing was lost: "
                                         f"{kept} and the partial file was removed. Free some space (or fix the "
                                         "folder), then run the same command again.") from e
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    data = json.dumps(obj, indent=1, default=_json_default).encode()
    return _atomic_replace(Path(path), lambda f: f.write(data))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    return _atomic_replace(Path(path), lambda f: torch.save(obj, f))


def atomic_keep_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Make ``dst`` a copy of ``src`` atomically: a hard link where the file system allows (free, and
    safe because every writer here replaces files by renaming, never rewrites them), else a copy."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link.tmp")
    try:
        tmp.unlink(missing_ok=True)
        os.link(src, tmp)
        os.replace(tmp, dst)
        return dst
    except OSError:
        tmp.unlink(missing_ok=True)

    def copy(f):
        with open(src, "rb") as s:
            while chunk := s.read(1 << 24):
                f.write(chunk)
    return _atomic_replace(dst, copy)


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        return dataclasses.asdict(o)
    raise TypeError(f"cannot store {type(o).__name__} in JSON")


def git_revision() -> str | None:
    """``$RESNET_GIT_REVISION`` when set (a copy of the tree sent to a GPU machine, whose ``.git`` may be
    missing or stale), else the project's commit (``+dirty`` with uncommitted changes), else None."""
    if os.environ.get("RESNET_GIT_REVISION"):
        return os.environ["RESNET_GIT_REVISION"]
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
    """The device as records name it: a GPU's model; a CPU's architecture and threads, and ", no fast bf16" on
    one without bf16 units (AVX2 only, or capped so with ``ONEDNN_MAX_CPU_ISA``): the two kinds of CPU both read
    "x86_64" but differ in speed and in bf16's arithmetic, so a run that moves between them opens a new piece
    and no comparison "on one device" mixes them."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    slow = "" if cpu_has_fast_bf16() else ", no fast bf16"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads{slow})"


def utc_now() -> str:
    """The time now, UTC, ISO 8601 to the second (how every record here stamps time)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
        "time_utc": utc_now(),
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
