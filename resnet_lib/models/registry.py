"""One place that turns a JSON architecture spec (as checkpoints store it) back into a model."""
from __future__ import annotations

import torch.nn as nn

from .cifar import cifar_resnet
from .imagenet import imagenet_resnet


def build_model(spec: dict) -> nn.Module:
    spec = dict(spec)
    kind = spec.pop("kind", "cifar")
    if kind == "cifar":
        return cifar_resnet(spec["depth"], spec.get("shortcut", "A"), spec.get("residual", True),
                            spec.get("num_classes", 10))
    if kind == "imagenet":
        return imagenet_resnet(**spec)
    raise ValueError(f"unknown model kind {kind!r} in the checkpoint's spec; known: 'cifar', 'imagenet'")
