"""The ImageNet networks of Table 1: plain-18/34, ResNet-18/34/50/101/152 (shortcut options A/B/C of
Sec. 3.3 / Table 3) and VGG-19 for comparison (Fig. 3).

Reading order follows torchvision's ``models/resnet.py``: ``conv3x3``/``conv1x1``, the shortcut and
``BasicBlock`` (shared with the CIFAR nets, so they live in ``models.blocks``), then here ``Bottleneck``,
``ImageNetResNet._make_layer`` and one-line builders; ``ImageNetSpec`` is what checkpoints store. The attribute
names are torchvision's (``conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc``; blocks ``conv1, bn1,
conv2, bn2[, conv3, bn3], downsample``), so a torchvision ``state_dict`` loads strictly into the
option-B nets (``load_torchvision_state_dict``).

Where this code departs from, or chooses within, the paper:

- ``stride_in="1x1"`` (default) puts a bottleneck's stride 2 on its first 1x1 conv, as the paper's
  released Caffe models do (Sec. 3.3: "downsampling is performed by conv3_1, conv4_1 and conv5_1 with a
  stride of 2"); torchvision ("ResNet V1.5") puts it on the 3x3 conv, which costs more FLOPs (ResNet-50:
  4.1 instead of 3.9 x10^9 multiply-adds) and is what its pretrained weights were trained with.
  ``stride_in="3x3"`` gives torchvision's placement. Both have the same parameters.
- Option A (Sec. 3.3, "zero-padding shortcuts ... all shortcuts are parameter-free") is defined in the
  paper for the basic-block nets only (Table 3, ResNet-34 A). Here it also works for bottleneck nets,
  by the same rule: an identity that is subsampled with stride 2 where the map shrinks and zero-padded
  where the channels grow (including conv2_1, 64 -> 256). That is our extension, not a model of the paper.
- ``small_input=True`` replaces the 7x7/2 stem and the max-pool by one 3x3/1 conv, for 64x64 Tiny ImageNet
  images (a departure: at 64x64 the paper's stem would leave a 2x2 map for conv5_x).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchvision
from torch import Tensor, nn

# The conv helpers, the option A/B/C shortcut and BasicBlock are shared with the CIFAR nets and come first in
# torchvision's reading order: they live in ``models.blocks``. This module continues with Bottleneck.
from .blocks import BasicBlock, add_shortcut, check_shortcut, conv1x1, conv3x3, init_weights, make_shortcut, spec_fields

# Table 1: blocks per stage (conv2_x .. conv5_x) for each depth, and which block builds it.
_STAGES = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
_STRIDE_IN = ("1x1", "3x3")


@dataclass(frozen=True)
class ImageNetSpec:
    """Everything that fixes a Table 1 network; stored in every checkpoint (``to_dict``) and read back by
    ``models.registry.build_model`` (``from_dict``). Checked on construction."""
    depth: int = 18
    residual: bool = True
    shortcut: str = "B"
    num_classes: int = 1000
    stride_in: str = "1x1"
    small_input: bool = False

    kind = "imagenet"  # the family tag of the stored dict (a class attribute, not a field)

    def __post_init__(self):
        if self.depth not in _STAGES:
            raise ValueError(f"depth {self.depth!r} is not one of Table 1's ImageNet depths {sorted(_STAGES)}; "
                             "for the CIFAR 6n+2 nets use resnet_lib.models.cifar.cifar_resnet")
        check_shortcut(self.shortcut)
        if self.stride_in not in _STRIDE_IN:
            raise ValueError(f"unknown stride_in {self.stride_in!r}; use '1x1' (the paper's bottleneck) or '3x3' "
                             "(torchvision's ResNet V1.5)")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {self.num_classes!r}")

    def to_dict(self) -> dict:
        """The JSON form checkpoints store: ``{"kind": "imagenet", "depth": ..., ...}``."""
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> ImageNetSpec:
        """The inverse of ``to_dict``; missing keys take their defaults (older checkpoints)."""
        return cls(**spec_fields(cls, d))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 restore (Fig. 5 right), for ResNet-50/101/152 (Sec. 4.1, "Deeper Bottleneck
    Architectures"). ``stride_in`` says which conv carries the stride (see the module docstring)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B",
                 residual: bool = True, stride_in: str = "1x1"):
        super().__init__()
        out_planes = planes * self.expansion
        s1, s3 = (stride, 1) if stride_in == "1x1" else (1, stride)
        self.conv1 = conv1x1(in_planes, planes, s1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, s3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_planes)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual
        self.downsample = make_shortcut(shortcut, in_planes, out_planes, stride) if residual else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        return add_shortcut(self, out, x)


class ImageNetResNet(nn.Module):
    """Table 1's networks. Build them with ``imagenet_resnet`` (which checks its arguments)."""

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], *, residual: bool = True,
                 shortcut: str = "B", num_classes: int = 1000, stride_in: str = "1x1", small_input: bool = False):
        super().__init__()
        self.in_planes = 64
        self.block_kw = dict(shortcut=shortcut, residual=residual, stride_in=stride_in)
        if small_input:  # departure for 64x64 inputs, see the module docstring
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:  # Table 1, conv1: 7x7, 64, stride 2; then 3x3 max pool, stride 2
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # Table 1: "average pool, 1000-d fc, softmax"
        self.num_features = 512 * block.expansion
        self.fc = nn.Linear(self.num_features, num_classes)
        init_weights(self)  # Sec. 3.4: "We initialize the weights as in [13]"; BN starts as the identity

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [block(self.in_planes, planes, stride, **self.block_kw)]
        self.in_planes = planes * block.expansion
        layers += [block(self.in_planes, planes, 1, **self.block_kw) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last feature map before pooling (conv5_x's output), e.g. for detection heads."""
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def imagenet_resnet(depth: int, *, residual: bool = True, shortcut: str = "B", num_classes: int = 1000,
                    stride_in: str = "1x1", small_input: bool = False) -> ImageNetResNet:
    """A Table 1 network: ``depth`` in {18, 34, 50, 101, 152}; ``residual=False`` gives the plain net."""
    return from_spec(ImageNetSpec(depth, residual, shortcut, num_classes, stride_in, small_input))


def from_spec(spec: ImageNetSpec) -> ImageNetResNet:
    """The network of a (checked) spec; it keeps the spec as ``model.spec``."""
    block = BasicBlock if spec.depth < 50 else Bottleneck
    model = ImageNetResNet(block, _STAGES[spec.depth], residual=spec.residual, shortcut=spec.shortcut,
                           num_classes=spec.num_classes, stride_in=spec.stride_in, small_input=spec.small_input)
    model.spec = spec
    return model


def resnet18(**kw) -> ImageNetResNet:
    return imagenet_resnet(18, **kw)


def resnet34(**kw) -> ImageNetResNet:
    return imagenet_resnet(34, **kw)


def resnet50(**kw) -> ImageNetResNet:
    return imagenet_resnet(50, **kw)


def resnet101(**kw) -> ImageNetResNet:
    return imagenet_resnet(101, **kw)


def resnet152(**kw) -> ImageNetResNet:
    return imagenet_resnet(152, **kw)


def plain18(**kw) -> ImageNetResNet:
    return imagenet_resnet(18, residual=False, **kw)


def plain34(**kw) -> ImageNetResNet:
    return imagenet_resnet(34, residual=False, **kw)


def vgg19(num_classes: int = 1000, batch_norm: bool = False) -> nn.Module:
    """VGG-19 (Simonyan & Zisserman, config E), the reference of Fig. 3 and Table 1's "18%".

    torchvision's model is used as is: 16 3x3 convs and three fc layers, 19.6 x10^9 multiply-adds at 224x224.
    """
    builder = torchvision.models.vgg19_bn if batch_norm else torchvision.models.vgg19
    return builder(weights=None, num_classes=num_classes)


def block_type(model: nn.Module) -> str:
    """``"basic"`` or ``"bottleneck"``: which block a network is made of."""
    return "bottleneck" if any(isinstance(m, Bottleneck) for m in model.modules()) else "basic"


def load_torchvision_state_dict(model: nn.Module, state_dict: dict[str, Tensor]) -> nn.Module:
    """Load a torchvision ResNet ``state_dict`` strictly, after checking it matches, with an error that
    names what differs. torchvision's pretrained ResNet-50/101/152 were trained with the stride on the
    3x3 conv: build those with ``stride_in="3x3"`` to get its outputs (the shapes are the same)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: ours {tuple(own[k].shape)} vs given {tuple(v.shape)}"
              for k, v in state_dict.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:3])})")
        raise ValueError("state dict does not match this network: " + ", ".join(parts) + ". Build the same "
                         "depth as the checkpoint with shortcut='B', residual=True, small_input=False and the "
                         "checkpoint's num_classes (torchvision's ImageNet weights: 1000).")
    model.load_state_dict(state_dict, strict=True)
    return model


def torchvision_parity(depth: int, image_size: int = 112, seed: int = 0) -> dict:
    """Load torchvision's ResNet-``depth`` (random weights, no download) into ours strictly, and compare
    parameter counts and outputs (ours with ``stride_in="3x3"``, torchvision's placement)."""
    if depth not in _STAGES:
        raise ValueError(f"depth {depth!r} is not one of Table 1's ImageNet depths {sorted(_STAGES)}")
    torch.manual_seed(seed)
    theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    ours = load_torchvision_state_dict(imagenet_resnet(depth, stride_in="3x3"), theirs.state_dict()).eval()
    x = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    return {"depth": depth, "params_ours": n_ours, "params_torchvision": n_theirs, "params_equal": n_ours == n_theirs,
            "strict_load": True, "max_abs_output_diff": diff}
