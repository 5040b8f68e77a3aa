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
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

SHORTCUTS = ("A", "B", "C")


@dataclass(frozen=True)
class CifarNetSpec:
    """Everything that fixes a CIFAR net's architecture; stored in every checkpoint."""
    depth: int = 20
    residual: bool = True
    shortcut: str = "A"
    num_classes: int = 10

    def __post_init__(self):
        check_depth(self.depth)
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut option {self.shortcut!r}; the paper defines 'A' (zero-padded "
                             "identity), 'B' (projection where dimensions change) and 'C' (all projections)")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")

    @property
    def name(self) -> str:
        kind = f"ResNet-{self.depth}" if self.residual else f"plain-{self.depth}"
        return kind if (not self.residual or self.shortcut == "A") else f"{kind}{self.shortcut}"


def check_depth(depth: int) -> int:
    """n for a depth of 6n+2 layers; a clear error otherwise."""
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth {depth!r} is not of the form 6n+2 with n >= 1 (Section 4.2); the paper's CIFAR "
                         "nets have 20, 32, 44, 56, 110 and 1202 layers: pick one of those or another 6n+2")
    return (depth - 2) // 6


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: take every other pixel and append zero channels. No parameters (Section 3.3)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.extra, self.stride = cout - cin, stride

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


def projection(cin: int, cout: int, stride: int) -> nn.Sequential:
    """Options B/C: W_s x of Eqn. (2), a 1x1 conv with BN."""
    return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


def make_shortcut(cin: int, cout: int, stride: int, option: str) -> nn.Module:
    grows = stride != 1 or cin != cout
    if option == "C" or (option == "B" and grows):
        return projection(cin, cout, stride)
    if grows:
        return ZeroPadShortcut(cin, cout, stride)
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convs; with ``residual`` the output is relu(F(x) + x) (Eqn. 1, Fig. 2), else relu(F(x))."""

    def __init__(self, cin: int, cout: int, stride: int = 1, residual: bool = True, shortcut: str = "A"):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = make_shortcut(cin, cout, stride, shortcut) if residual else None

    def forward(self, x):
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        out = self.relu(out)
        return out


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
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He et al. 2015 ([13]): N(0, 2/fan_out) as in fb.resnet.torch
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
        s = self.spec
        layers = [BasicBlock(cin, cout, stride, s.residual, s.shortcut)]
        layers += [BasicBlock(cout, cout, 1, s.residual, s.shortcut) for _ in range(blocks - 1)]
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


def spec_dict(model: CifarNet) -> dict:
    return asdict(model.spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
