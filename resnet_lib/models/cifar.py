"""The CIFAR-10 networks of Section 4.2: plain and residual nets of 6n+2 layers.

Paper, Section 4.2: a 3x3 conv, then three stages of 2n 3x3 convs with 16, 32 and 64 filters on
32x32, 16x16 and 8x8 maps (stride-2 convs subsample), then global average pooling, a 10-way fc and
softmax. The residual nets add a shortcut around each pair of 3x3 convs. BN follows every conv
(Section 3.4); weights are initialised as in He et al. 2015 ("[13]").

Shortcut options (Section 3.3):
  A: identity everywhere; where dimensions grow, subsample by 2 and zero-pad the new channels
     (parameter-free; the paper's choice on CIFAR-10, so Table 6's counts are option A's).
  B: projection (1x1 conv + BN) only where dimensions grow, identity elsewhere.
  C: projections on every shortcut.
The block, the shortcut and the initialisation are ``models.blocks``', shared with the ImageNet nets.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from .blocks import BasicBlock, check_shortcut, conv3x3, init_weights, spec_fields


@dataclass(frozen=True)
class CifarNetSpec:
    """Everything that fixes a CIFAR net's architecture; stored in every checkpoint (``to_dict``) and read
    back by ``models.registry.build_model`` (``from_dict``)."""
    depth: int = 20
    residual: bool = True
    shortcut: str = "A"
    num_classes: int = 10

    kind = "cifar"  # the family tag of the stored dict (a class attribute, not a field)

    def __post_init__(self):
        check_depth(self.depth)
        check_shortcut(self.shortcut)
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")

    @property
    def name(self) -> str:
        kind = f"ResNet-{self.depth}" if self.residual else f"plain-{self.depth}"
        return kind if (not self.residual or self.shortcut == "A") else f"{kind}{self.shortcut}"

    def to_dict(self) -> dict:
        """The JSON form checkpoints store: ``{"kind": "cifar", "depth": ..., ...}``."""
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> CifarNetSpec:
        """The inverse of ``to_dict``; missing keys take their defaults (older checkpoints)."""
        return cls(**spec_fields(cls, d))


def check_depth(depth: int) -> int:
    """n for a depth of 6n+2 layers; a clear error otherwise."""
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth {depth!r} is not of the form 6n+2 with n >= 1 (Section 4.2); the paper's CIFAR "
                         "nets have 20, 32, 44, 56, 110 and 1202 layers: pick one of those or another 6n+2")
    return (depth - 2) // 6


class CifarNet(nn.Module):
    """6n+2 layers: one conv, three stages of n two-conv blocks (6n convs), one fc."""

    def __init__(self, spec: CifarNetSpec):
        super().__init__()
        self.spec = spec
        n = check_depth(spec.depth)
        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, 16, n, stride=1)
        self.layer2 = self._make_layer(16, 32, n, stride=2)
        self.layer3 = self._make_layer(32, 64, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, spec.num_classes)
        init_weights(self)

    def _make_layer(self, in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        kw = dict(shortcut=self.spec.shortcut, residual=self.spec.residual)
        layers = [BasicBlock(in_planes, planes, stride, **kw)]
        layers += [BasicBlock(planes, planes, 1, **kw) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward_features(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return x

    def forward(self, x):
        x = self.forward_features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def cifar_resnet(depth: int = 20, shortcut: str = "A", residual: bool = True, num_classes: int = 10) -> CifarNet:
    """A CIFAR-10 net of Section 4.2: ``cifar_resnet(56)`` is ResNet-56, ``residual=False`` its plain twin."""
    return CifarNet(CifarNetSpec(depth=depth, residual=residual, shortcut=shortcut, num_classes=num_classes))


def cifar_plain(depth: int = 20, num_classes: int = 10) -> CifarNet:
    return cifar_resnet(depth, residual=False, num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
