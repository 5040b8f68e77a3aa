"""Run folders: the checkpoint and result files, their checks on resume, and loading a trained model."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
import torch.nn as nn

from ..models.registry import build_model
from .config import TrainConfig

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"


# settings that change how a run executes, not what it computes: a run may resume with others
EXECUTION_ONLY = ("eval_every", "checkpoint_every", "cuda_graph")


def check_checkpoint(ckpt: dict, path: Path, spec: dict | None, cfg: TrainConfig) -> None:
    if spec is not None and ckpt.get("spec") not in (None, spec):
        raise ValueError(f"the checkpoint {path} was written for the architecture {ckpt['spec']}, but this run "
                         f"builds {spec}. Use another run folder for this architecture, or delete the old one.")
    old = ckpt.get("config", {})
    same = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in EXECUTION_ONLY}
    diff = {k: (old.get(k), v) for k, v in same.items() if k in old and _norm(old[k]) != _norm(v)}
    if diff:
        raise ValueError(f"the checkpoint {path} was trained with a different recipe ({diff}: checkpoint vs now). "
                         "Resume with the same settings, or use another run folder.")


def _norm(v):
    return list(v) if isinstance(v, tuple) else v



def load_model(run_dir: str | os.PathLike, device="cpu") -> nn.Module:
    """The trained model of a run folder, in eval mode."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint in {run_dir}; train the run first")
    ckpt = torch.load(path, map_location=device, weights_only=False)
    if ckpt.get("spec") is None:
        raise ValueError(f"{path} has no architecture spec; it cannot be rebuilt")
    model = build_model(ckpt["spec"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise ValueError(f"{path} does not match the architecture {ckpt['spec']}: {str(e).splitlines()[0]}") from e
    return model.to(device).eval()
