"""One place that turns a JSON architecture spec (as checkpoints store it, ``<Spec>.to_dict()``) back into a
model: ``{"kind": "cifar", ...}`` is a ``CifarNetSpec``, ``{"kind": "imagenet", ...}`` an ``ImageNetSpec``."""
from __future__ import annotations

import torch.nn as nn

from .cifar import CifarNet, CifarNetSpec
from .imagenet import ImageNetSpec, from_spec

SPECS = {"cifar": CifarNetSpec, "imagenet": ImageNetSpec}


def spec_from_dict(spec: dict) -> CifarNetSpec | ImageNetSpec:
    """The checked spec of a stored dict (no ``kind``: a CIFAR net, as the first checkpoints were)."""
    kind = spec.get("kind", "cifar")
    if kind not in SPECS:
        raise ValueError(f"unknown model kind {kind!r} in the checkpoint's spec; known: {', '.join(map(repr, SPECS))}")
    return SPECS[kind].from_dict(spec)


def build_model(spec: dict) -> nn.Module:
    s = spec_from_dict(spec)
    return CifarNet(s) if isinstance(s, CifarNetSpec) else from_spec(s)
