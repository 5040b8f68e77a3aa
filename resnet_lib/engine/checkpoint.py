"""Run folders: what a run is (its identity), the checkpoint and result files, loading them safely,
and what happens to a file that is damaged or belongs to another run.

A run folder holds ``checkpoint.pt`` (tensors and plain containers only: it loads with
``torch.load(weights_only=True)``, so a file from elsewhere cannot run code), ``checkpoint.prev.pt``
(the one before, kept so that a divergence can fall back to weights known to be good) and, once the run
has finished, ``result.json``, written once and complete. A stored file is used only when its identity,
everything that changes the run's numbers, equals the one asked for. A damaged file, or one from another
run or another version, is never deleted or overwritten: it is renamed ``<name>.damaged-<time>``, a
warning names it and the command that rebuilds it, and the run is trained again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from ..base.errors import UserError
from ..base.io import _json_default, atomic_keep_copy, atomic_torch_save
from ..models.registry import build_model
from .config import TrainConfig

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
RESULT = "result.json"
FORMAT = 2  # of checkpoints and results; 1: before identities (pickled, unchecked)

# TrainConfig fields that cannot change a run's numbers: where the checkpoints fall (a resumed run is
# bitwise the uninterrupted one). Everything else is identity, eval_every too: it sets the recorded curve
# (and, for the ImageNet plateau rule, when the lr drops); cuda_graph too: replay rounds differently.
EXECUTION_ONLY = ("checkpoint_every", "compile")  # how a run executes, not what it computes (compile: the
# same arithmetic fused differently, float rounding apart; a run keeps its identity with or without it)
CHECKPOINT_KEYS = ("format", "identity", "model", "optimizer", "schedule", "state")
RESULT_KEYS = ("format", "identity", "spec", "config", "history", "final", "provenance")


class RunStoreError(UserError):
    """A stored run file that cannot be used; the message names the file and what to do."""


class UnsafeCheckpoint(RunStoreError):
    """A checkpoint holding Python objects that would run code when loaded: refused, left in place."""


class DamagedFile(RunStoreError):
    """A stored file that is truncated, incomplete, from another version or from another run."""


class RunStoreWarning(UserWarning):
    pass


# ------------------------------------------------------------------------------------------ identity

def run_identity(spec: dict | None, cfg: TrainConfig, data: dict | None = None) -> dict:
    """Everything that changes a run's numbers: the architecture ``spec``, the recipe (all of ``cfg``
    but :data:`EXECUTION_ONLY`), and the caller's data options ``data``. JSON-able."""
    train = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in EXECUTION_ONLY}
    return json.loads(json.dumps({"spec": spec, "train": train, "data": data or {}}, default=_json_default))


def identity_hash(identity: dict, length: int = 10) -> str:
    """A short stable hash of a JSON-able dict (keys sorted, tuples as lists): equal dicts, equal hashes."""
    canon = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(canon.encode()).hexdigest()[:length]


def identity_diff(stored: dict | None, wanted: dict) -> dict:
    """``{"path.to.field": (stored, wanted)}`` for each field that differs (empty: the same run)."""
    out = {}

    def walk(a, b, at):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in [*b, *(k for k in a if k not in b)]:  # in the order of the identity asked for
                walk(a.get(k), b.get(k), f"{at}.{k}" if at else k)
        elif a != b:
            out[at or "identity"] = (a, b)

    walk(json.loads(json.dumps(stored, default=_json_default)), json.loads(json.dumps(wanted, default=_json_default)), "")
    return out


# ------------------------------------------------------------------------------- damaged files

def move_aside(path: str | os.PathLike, why: str, rebuild: str | None = None, tag: str = "damaged") -> Path:
    """Rename a damaged or foreign ``path`` to ``<name>.<tag>-<UTC time>`` (never deleted) and warn,
    naming it and the command that rebuilds it. Returns the new path. (``tag`` "replaced": a stored run
    that ``force`` trains again is kept the same way.)"""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    new = path.with_name(f"{path.name}.{tag}-{stamp}")
    n = 1
    while new.exists():
        new, n = path.with_name(f"{path.name}.{tag}-{stamp}-{n}"), n + 1
    os.replace(path, new)
    warnings.warn(f"{path} {why}. It was moved aside to {new.name} (kept, not deleted) and the run is trained "
                  f"again{'; to rebuild it yourself: ' + rebuild if rebuild else ''}.", RunStoreWarning, stacklevel=3)
    return new


def read_result(path: str | os.PathLike, identity: dict | None = None, rebuild: str | None = None,
                required: tuple[str, ...] = (), move: bool = True) -> dict | None:
    """The finished run stored at ``path`` if it is complete and (given ``identity``) the same run;
    None when there is none. A truncated, incomplete or foreign file is moved aside (see :func:`move_aside`;
    ``move=False``: left for the process that owns the folder, e.g. rank 0)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        res = json.loads(path.read_text())
        problem = None if isinstance(res, dict) else "does not hold a result (a JSON object)"
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        res, problem = None, f"is not valid JSON (truncated or damaged: {e.msg} at character {e.pos})" \
            if isinstance(e, json.JSONDecodeError) else "is not text"
    if problem is None:
        missing = [k for k in (*RESULT_KEYS, *required) if k not in res]
        if missing:
            problem = f"is incomplete (no {', '.join(missing)}) or from another version of resnet_lib"
        elif res["format"] != FORMAT:
            problem = f"was written by another version of resnet_lib (format {res['format']}, this one reads {FORMAT})"
        elif identity is not None and (diff := identity_diff(res["identity"], identity)):
            problem = f"belongs to another run ({_describe(diff)}: stored vs asked)"
    if problem:
        if move:
            move_aside(path, problem, rebuild)
        return None
    return res


def _describe(diff: dict, most: int = 4) -> str:
    items = [f"{k} {a!r} vs {b!r}" for k, (a, b) in list(diff.items())[:most]]
    return "; ".join(items) + (f"; and {len(diff) - most} more" if len(diff) > most else "")


# ----------------------------------------------------------------------------------- checkpoints

def load_checkpoint(path: str | os.PathLike, device="cpu", rebuild: str | None = None) -> dict:
    """A checkpoint's dict, loaded with ``weights_only=True``. Raises :class:`UnsafeCheckpoint` for a file
    that holds other Python objects (nothing of it runs) and :class:`DamagedFile` for one that is truncated,
    incomplete or from another version."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        why = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "Unsupported" in ln),
                   str(e).splitlines()[0] if str(e) else "")
        raise UnsafeCheckpoint(
            f"refused to load {path}: it is not a plain checkpoint (tensors and containers only) but holds Python "
            f"objects that could run code when loaded ({why}). resnet_lib never writes such files; nothing of it "
            f"was run. If you do not know where it came from, delete it; to train this run afresh, move it away and "
            f"run {rebuild or 'the same command again'}.") from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as e:
        raise DamagedFile(f"{path} cannot be read as a checkpoint (truncated or damaged: "
                          f"{(str(e).splitlines() or [type(e).__name__])[0][:160]})") from e
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in CHECKPOINT_KEYS):
        missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
        raise DamagedFile(f"{path} is incomplete (no {', '.join(missing)}) or was written by another version "
                          f"of resnet_lib")
    if ckpt["format"] != FORMAT:
        raise DamagedFile(f"{path} was written by another version of resnet_lib (format {ckpt['format']}, "
                          f"this one reads {FORMAT})")
    return ckpt


def check_identity(ckpt: dict, path: Path, identity: dict) -> None:
    """A checkpoint resumes only the run it was written for."""
    diff = identity_diff(ckpt["identity"], identity)
    if diff:
        raise DamagedFile(f"{path} was written for another run ({_describe(diff)}: checkpoint vs this run)")


def load_state_checked(model: nn.Module, state: dict, path: Path) -> None:
    """``model.load_state_dict`` after checking every name and shape first, so a mismatched file leaves
    the model untouched (``load_state_dict`` copies the tensors that fit before it complains)."""
    own = model.state_dict()
    if not isinstance(state, dict):
        raise DamagedFile(f"{path} holds no model weights (a dict of tensors)")
    wrong = sorted(set(own) ^ set(state)) + [k for k in own if k in state and
                                             (not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape)]
    if wrong:
        raise DamagedFile(f"{path} holds weights of another architecture ({len(wrong)} tensors differ, e.g. {wrong[0]})")
    model.load_state_dict(state)


def save_checkpoint(run_dir: Path, payload: dict) -> Path:
    """Write ``checkpoint.pt`` atomically, keeping the one it replaces as ``checkpoint.prev.pt``."""
    path = run_dir / CHECKPOINT
    if path.exists():
        atomic_keep_copy(path, run_dir / PREVIOUS)
    return atomic_torch_save(path, {"format": FORMAT, **payload})


def checkpoint_iteration(path: Path) -> int | None:
    """The iteration a checkpoint was written at (None: no readable checkpoint there)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["state"]["iteration"])
    except Exception:  # noqa: BLE001 - any unreadable file counts as none
        return None


def keep_checkpoint_before(run_dir: Path, bad_iteration: int) -> tuple[Path | None, int | None]:
    """After a divergence at ``bad_iteration``: make ``checkpoint.pt`` the newest one whose weights trained
    without diverging (written before that iteration), moving a newer one aside. Returns (path, iteration)."""
    path, prev = run_dir / CHECKPOINT, run_dir / PREVIOUS
    at = checkpoint_iteration(path) if path.exists() else None
    if at is not None and at < bad_iteration:
        return path, at
    if at is not None:
        os.replace(path, path.with_name(f"{CHECKPOINT}.diverged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"))
    before = checkpoint_iteration(prev) if prev.exists() else None
    if before is not None and before < bad_iteration:
        os.replace(prev, path)
        return path, before
    return None, None


def load_model(run_dir: str | os.PathLike, device="cpu") -> nn.Module:
    """The trained model of a run folder, in eval mode (weights only: no code in the file runs)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint in {run_dir}; train the run first")
    ckpt = load_checkpoint(path, device)
    spec = ckpt["identity"].get("spec") if isinstance(ckpt["identity"], dict) else None
    if not isinstance(spec, dict):
        raise DamagedFile(f"{path} has no architecture spec; it cannot be rebuilt. Train the run again.")
    try:
        model = build_model(spec)
    except (KeyError, ValueError, TypeError) as e:
        raise DamagedFile(f"{path} has an architecture spec that cannot be built ({spec}: {e}). Train the run "
                          "again.") from e
    load_state_checked(model, ckpt["model"], path)
    return model.to(device).eval()
