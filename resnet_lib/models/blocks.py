"""The pieces both model families are built from, once: bias-free conv helpers, the option A/B/C shortcut
(Sec. 3.3), the two-conv ``BasicBlock`` (Fig. 5 left) and He et al. 2015's initialisation.

Names and reading order are torchvision's ``models/resnet.py`` (``conv3x3``/``conv1x1``, the block's
``conv1, bn1, relu, conv2, bn2, downsample``), so torchvision's ``state_dict`` loads strictly into
``models.imagenet``'s option-B nets; ``models.cifar`` uses the same block with 16/32/64 planes.
"""
from __future__ import annotations

from dataclasses import fields

import torch.nn.functional as F
from torch import Tensor, nn

SHORTCUTS = ("A", "B", "C")


def check_shortcut(option: str) -> str:
    if option not in SHORTCUTS:
        raise ValueError(f"unknown shortcut option {option!r}; use 'A' (zero-padding), 'B' (projection where "
                         "dimensions grow) or 'C' (projection everywhere), as in Sec. 3.3 / Table 3")
    return option


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 conv, padding 1, no bias: BN follows every conv (Sec. 3.4)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: take every other pixel and append zero channels. No parameters (Section 3.3)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.extra, self.stride = out_planes - in_planes, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


def make_shortcut(option: str, in_planes: int, out_planes: int, stride: int) -> nn.Module | None:
    """A block's ``downsample`` for option A/B/C (Sec. 3.3, Table 3); ``None`` means the plain identity.

    A: zero-padding where dimensions grow, identity elsewhere. B: 1x1 projection W_s of Eqn. (2), with BN,
    where they grow, identity elsewhere. C: a projection on every shortcut.
    """
    grows = stride != 1 or in_planes != out_planes
    if option == "A":
        return ZeroPadShortcut(in_planes, out_planes, stride) if grows else None
    if option == "B" and not grows:
        return None
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))


def add_shortcut(block: nn.Module, out: Tensor, x: Tensor) -> Tensor:
    """A block's last step: Eq. (1)/(2), y = F(x) + x (or W_s x with a ``downsample``), then the ReLU after the
    addition (Fig. 2); a plain block (``residual=False``) has the ReLU only."""
    if block.residual:
        out = out + (x if block.downsample is None else block.downsample(x))
    return block.relu(out)


class BasicBlock(nn.Module):
    """Two 3x3 convs (Fig. 5 left); with ``residual`` the output is relu(F(x) + x) (Eqn. 1, Fig. 2).
    ``residual=False`` drops the shortcut: the plain nets of Sec. 4.1 and 4.2."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B",
                 residual: bool = True, stride_in: str = "1x1"):
        super().__init__()  # stride_in is accepted for a uniform signature; the first 3x3 conv always strides
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.residual = residual
        self.downsample = make_shortcut(shortcut, in_planes, planes, stride) if residual else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        return add_shortcut(self, out, x)


def init_weights(model: nn.Module) -> None:
    """Sec. 3.4: "We initialize the weights as in [13]" (He et al. 2015: N(0, 2/fan_out), as in the
    authors' code); BN starts as the identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def spec_fields(cls, d: dict) -> dict:
    """The dataclass fields of ``cls`` in the stored dict ``d``, with a clear error for a wrong family or key."""
    d = dict(d)
    kind = d.pop("kind", cls.kind)
    if kind != cls.kind:
        raise ValueError(f"spec of kind {kind!r} given to {cls.__name__} (kind {cls.kind!r})")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in a {cls.kind} architecture spec; known: {sorted(names)}")
    return d
