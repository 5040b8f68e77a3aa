"""Parameters and FLOPs, counted from the code, and Table 1 rebuilt from a built network.

What "FLOPs" means here, as in the paper's Table 1 ("FLOPs" = multiply-adds, e.g. 3.6 x10^9 for the
34-layer nets): the multiply-adds of every convolution and fully-connected layer for one image, counted by
``torch.utils.flop_counter.FlopCounterMode`` (a maintained counter that reads the shapes of each
conv/matmul op) and divided by 2, since it counts a multiply-add as two FLOPs. Batch norm, ReLU, pooling,
the shortcut additions and biases are not counted: together they are under 1% of the total, and the paper
appears to leave them out too. Projection shortcuts (options B/C) are counted.

Counting runs on the ``meta`` device: shapes only, no arithmetic, so even ResNet-152 costs milliseconds.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..base.paper import cifar_params_exact, targets
from . import imagenet as im
from .cifar import cifar_resnet

# Table 1's stage names beside torchvision's attribute names.
STAGES = [("conv1", "conv1"), ("conv2_x", "layer1"), ("conv3_x", "layer2"), ("conv4_x", "layer3"),
          ("conv5_x", "layer4"), ("fc", "fc")]


def count_params(model: nn.Module) -> int:
    """Every parameter (weights, BN's gamma/beta, fc bias); BN's running statistics are buffers, not counted."""
    return sum(p.numel() for p in model.parameters())


def _on_meta(model: nn.Module) -> nn.Module:
    if next(model.parameters()).device.type == "meta":
        return model
    return copy.deepcopy(model).to("meta")


def count_macs(model: nn.Module, input_size: tuple[int, int, int] = (3, 224, 224), by_module: bool = False):
    """Multiply-adds of conv and fc layers for one image of ``input_size`` (C, H, W); see the module docstring.

    ``by_module=True`` returns ``{module name: multiply-adds}`` for every submodule (names as in
    ``named_modules``, ``""`` for the whole network) instead of the total.
    """
    if len(input_size) != 3:
        raise ValueError(f"input_size is (channels, height, width) of one image, got {input_size!r}")
    net = _on_meta(model).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.empty(1, *input_size, device="meta"))
    if not by_module:
        return counter.get_total_flops() // 2
    root = type(net).__name__
    out = {}
    for name, ops in counter.get_flop_counts().items():
        key = "" if name in ("Global", root) else name.removeprefix(root + ".")
        out[key] = sum(ops.values()) // 2
    return out


def _output_sizes(net: nn.Module, input_size) -> dict[str, tuple[int, ...]]:
    shapes, hooks = {}, []
    for _, attr in STAGES:
        mod = getattr(net, attr)
        hooks.append(mod.register_forward_hook(lambda m, i, o, a=attr: shapes.__setitem__(a, tuple(o.shape[1:]))))
    with torch.no_grad():
        net(torch.empty(1, *input_size, device="meta"))
    for h in hooks:
        h.remove()
    return shapes


def _stage_text(stage: nn.Sequential) -> str:
    """Table 1's bracket notation, read from the built block: e.g. "[3x3, 64; 3x3, 64] x2"."""
    first = stage[0]
    convs = [m for m in (first.conv1, first.conv2, getattr(first, "conv3", None)) if m is not None]
    inner = "; ".join(f"{c.kernel_size[0]}x{c.kernel_size[1]}, {c.out_channels}" for c in convs)
    return f"[{inner}] x{len(stage)}"


def table1(model: nn.Module, input_size: tuple[int, int, int] = (3, 224, 224)) -> list[dict]:
    """Table 1 for one ImageNet network: per stage its output size, its blocks (read from the modules),
    parameters and multiply-adds; a last row with the totals."""
    net = _on_meta(model).eval()
    macs = count_macs(net, input_size, by_module=True)
    sizes = _output_sizes(net, input_size)
    rows = []
    for paper_name, attr in STAGES:
        mod = getattr(net, attr)
        if attr == "conv1":
            c = net.conv1
            text = f"{c.kernel_size[0]}x{c.kernel_size[1]}, {c.out_channels}, stride {c.stride[0]}"
        elif attr == "fc":
            text = f"average pool, {net.fc.out_features}-d fc"
        else:
            text = _stage_text(mod)
            if attr == "layer1" and isinstance(net.maxpool, nn.MaxPool2d):  # Table 1 lists the pool in conv2_x
                text = "3x3 max pool, stride 2; " + text
        shape = sizes[attr]
        rows.append({"layer": paper_name, "output": "x".join(map(str, shape[1:])) if len(shape) == 3 else "1x1",
                     "blocks": text, "params": count_params(mod) + (count_params(net.bn1) if attr == "conv1" else 0),
                     "macs": macs.get(attr, 0)})
    rows.append({"layer": "total", "output": "", "blocks": "", "params": count_params(net), "macs": macs[""]})
    return rows


def build_on_meta(builder: Callable[[], nn.Module]) -> nn.Module:
    """Build a network without allocating its weights (for counting only)."""
    with torch.device("meta"):
        return builder()


def paper_macs() -> dict[str, float]:
    """Table 1's FLOPs (multiply-adds) by name: "18" .. "152", "VGG-16", "VGG-19"."""
    return dict(targets()["table1_flops_multiply_adds"])


def table1_summary(depths=(18, 34, 50, 101, 152), shortcut: str = "B", stride_in: str = "1x1",
                   plain: bool = True, vgg: bool = True) -> list[dict]:
    """One row per network: parameters and multiply-adds at 224x224 beside Table 1's FLOPs.

    Rows hold ``name, params, macs, paper_macs, rel_diff`` (ours/paper - 1; ``None`` where the paper
    prints no number). The paper's FLOPs hold for the plain and residual nets alike (Table 1 lists one
    number per depth; Sec. 4.1: the shortcuts "add neither extra parameter nor computational complexity").
    """
    paper = paper_macs()
    specs = []
    for d in depths:
        if plain and d in (18, 34):
            specs.append((f"plain-{d}", d, dict(residual=False)))
        specs.append((f"ResNet-{d}", d, dict(shortcut=shortcut, stride_in=stride_in)))
    rows = []
    for name, d, kw in specs:
        net = build_on_meta(lambda: im.imagenet_resnet(d, **kw))
        rows.append(_summary_row(name, net, paper.get(str(d))))
    if vgg:
        rows.append(_summary_row("VGG-19", build_on_meta(im.vgg19), paper.get("VGG-19")))
    return rows


def _summary_row(name: str, net: nn.Module, paper: float | None) -> dict:
    macs = count_macs(net)
    return {"name": name, "params": count_params(net), "macs": macs, "paper_macs": paper,
            "rel_diff": None if paper is None else macs / paper - 1}


def table1_grid(depths=(18, 34, 50, 101, 152), input_size: tuple[int, int, int] = (3, 224, 224),
                **kw) -> list[dict]:
    """Table 1 itself, rebuilt: one row per stage (conv1 .. fc) with the output size and, per depth, the
    blocks as read from the built network; then rows of parameters and FLOPs (x10^9 multiply-adds)."""
    tables = {d: table1(build_on_meta(lambda: im.imagenet_resnet(d, **kw)), input_size) for d in depths}
    first = tables[depths[0]]
    rows = []
    for i, r in enumerate(first[:-1]):
        rows.append({"layer name": r["layer"], "output size": r["output"],
                     **{f"{d}-layer": tables[d][i]["blocks"] for d in depths}})
    rows.append({"layer name": "params", "output size": "",
                 **{f"{d}-layer": f"{tables[d][-1]['params'] / 1e6:.1f}M" for d in depths}})
    rows.append({"layer name": "FLOPs", "output size": "",
                 **{f"{d}-layer": f"{tables[d][-1]['macs'] / 1e9:.2f} x10^9" for d in depths}})
    return rows


def cifar_params(depths=(20, 32, 44, 56, 110, 1202)) -> list[dict]:
    """Parameters of the option-A CIFAR ResNets (Sec. 4.2) beside Table 6's printed counts and the exact
    counts of the architecture as described."""
    printed = targets()["cifar10_params_paper"]
    exact = cifar_params_exact()
    rows = []
    for d in depths:
        n = count_params(build_on_meta(lambda: cifar_resnet(d)))
        rows.append({"depth": d, "params": n, "paper": printed.get(str(d)), "exact_expected": exact.get(d),
                     "equal": exact.get(d) == n if d in exact else None})
    return rows
