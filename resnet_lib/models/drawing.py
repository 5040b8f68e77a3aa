"""Pictures of the blocks (Fig. 2, Fig. 5) and of whole networks (Fig. 3), drawn with matplotlib from
the built modules, so a picture always shows the code's network, not a hand-drawn one."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from torch import nn

from .blocks import ZeroPadShortcut

STAGE_COLORS = ["#9ecae1", "#a1d99b", "#fdae6b", "#bcbddc", "#fc9272", "#d9d9d9"]


def _box(ax, x, y, text, color="#deebf7", w=1.9, h=0.42, fontsize=9):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02", fc=color, ec="k", lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, xy0, xy1, style="-|>", rad=0.0, ls="-", color="k"):
    ax.add_patch(FancyArrowPatch(xy0, xy1, arrowstyle=style, mutation_scale=10, lw=1.2, ls=ls, color=color,
                                 connectionstyle=f"arc3,rad={rad}"))


def draw_block(kind: str = "basic", residual: bool = True, shortcut: str = "identity", width: int = 64, ax=None):
    """One block, top to bottom: the basic block of Fig. 2/5 (left) or the bottleneck of Fig. 5 (right).
    ``shortcut``: "identity", "projection" (1x1 conv, options B/C) or "zero-pad" (option A)."""
    if kind not in ("basic", "bottleneck"):
        raise ValueError(f"unknown block kind {kind!r}; use 'basic' or 'bottleneck'")
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 4.2))
    if kind == "basic":
        layers = [f"3x3 conv, {width}", "BN, ReLU", f"3x3 conv, {width}", "BN"]
    else:
        layers = [f"1x1 conv, {width}", "BN, ReLU", f"3x3 conv, {width}", "BN, ReLU", f"1x1 conv, {4 * width}", "BN"]
    ys = [len(layers) - i for i in range(len(layers))]
    # a taller block is drawn at a smaller scale (equal aspect): shrink its labels with it, so that they stay
    # inside their boxes (the basic block's 4 layers span 6.3 units of height at 9 pt)
    fontsize = 9 * min(1.0, 6.3 / (len(layers) + 2.3))
    top, bottom = ys[0] + 0.8, ys[-1] - 0.9
    ax.text(0, top + 0.15, "x", ha="center", fontsize=11)
    _arrow(ax, (0, top), (0, ys[0] + 0.21))
    for i, (y, text) in enumerate(zip(ys, layers)):
        _box(ax, 0, y, text, "#c6dbef" if "conv" in text else "#f0f0f0", fontsize=fontsize)
        if i + 1 < len(layers):
            _arrow(ax, (0, y - 0.21), (0, ys[i + 1] + 0.21))
    if residual:
        ax.add_patch(plt.Circle((0, bottom), 0.17, fc="w", ec="k"))
        ax.text(0, bottom, "+", ha="center", va="center", fontsize=12)
        _arrow(ax, (0, ys[-1] - 0.21), (0, bottom + 0.17))
        ls = "-" if shortcut == "identity" else "--"
        _arrow(ax, (0.15, top - 0.05), (0.17, bottom), rad=-0.45, ls=ls)
        ax.text(1.25, (top + bottom) / 2, shortcut, rotation=90, va="center", fontsize=9)
        _arrow(ax, (0, bottom - 0.17), (0, bottom - 0.6))
    else:
        _arrow(ax, (0, ys[-1] - 0.21), (0, bottom - 0.6))
    ax.text(0, bottom - 0.85, "ReLU", ha="center", fontsize=9)
    title = ("residual " if residual else "plain ") + ("basic block" if kind == "basic" else "bottleneck block")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(-1.3, 1.6)
    ax.set_ylim(bottom - 1.1, top + 0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def shortcut_kind(block: nn.Module) -> str | None:
    """What a block's shortcut is: None (plain), "identity", "zero-pad" (option A) or "projection"."""
    if not block.residual:
        return None
    sc = block.downsample
    if sc is None:
        return "identity"
    if isinstance(sc, ZeroPadShortcut):
        return "zero-pad"
    return "projection"


def stage_labels(n_stages: int) -> list[str]:
    """The paper's names for the stages: Table 1's conv2_x .. conv5_x for the four-stage ImageNet nets; the
    CIFAR nets of Sec. 4.2 have three stages, which the paper names by their map size (32, 16, 8)."""
    if n_stages == 4:
        return [f"conv{i + 2}_x" for i in range(4)]
    return [f"{32 >> i}x{32 >> i} maps" for i in range(n_stages)]


def _stages(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    names = [n for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(model, n)]
    if not names:
        raise ValueError("draw_network expects a network with layer1, layer2, ... (ImageNet or CIFAR nets)")
    return [(label, list(getattr(model, n))) for label, n in zip(stage_labels(len(names)), names)]


def draw_vgg(model: nn.Module, title: str = "VGG-19", ax=None, n_bars: int | None = None):
    """Fig. 3's left column: one bar per weight layer of a VGG net (convs, then fc layers), coloured by
    the map size between its max-pools, with the colour a ResNet stage of that map size has; ``n_bars``
    widens the axis to line up with a deeper net below."""
    layers, s = [], 0
    for m in model.modules():
        if isinstance(m, nn.MaxPool2d):
            s += 1
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            layers.append((m.out_channels if isinstance(m, nn.Conv2d) else m.out_features, s, isinstance(m, nn.Linear)))
    if ax is None:
        _, ax = plt.subplots(figsize=(min(18, 2 + 0.12 * len(layers)), 2.6))
    for x, (width, stage, fc) in enumerate(layers):
        # colour by map size, as the ResNets' stages: 56x56 is conv2_x's colour, 112x112 conv1's grey
        colour = "#252525" if fc else ("#d9d9d9", "#636363", *STAGE_COLORS)[stage]
        ax.bar(x, min(width, 512) ** 0.5, color=colour, width=0.8)
    for stage in sorted({st for _, st, fc in layers if not fc}):
        xs = [x for x, (_, st, fc) in enumerate(layers) if st == stage and not fc]
        ax.text(sum(xs) / len(xs), -2.8, f"{224 >> stage}x{224 >> stage}", ha="center", fontsize=8)
    ax.set_xlim(-1, max(n_bars or 0, len(layers)) + 1)
    ax.set_ylim(-3.6, 512 ** 0.5 * 1.6 + 3)
    ax.set_yticks([])
    ax.set_xlabel("weight layer (bar height ~ sqrt(channels), fc bars capped at 512; last three: fc)")
    ax.set_title(title, fontsize=10)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return ax


def draw_network(model: nn.Module, title: str = "", ax=None):
    """Fig. 3 style, left to right: one bar per weight layer (height ~ its width in channels, colour by stage),
    an arc over each block for its shortcut (solid: identity; dashed: zero-pad or projection, where the
    dimensions change, as Fig. 3 draws them)."""
    stages = _stages(model)
    convs_per_block = 3 if hasattr(stages[0][1][0], "conv3") else 2
    n_layers = 1 + sum(len(b) for _, b in stages) * convs_per_block + 1
    if ax is None:
        _, ax = plt.subplots(figsize=(min(18, 2 + 0.12 * n_layers), 2.6))
    x = 0
    stem = model.conv1
    ax.bar(x, stem.out_channels ** 0.5, color="#636363", width=0.8)
    ax.text(x, -2.8, "conv1", ha="center", fontsize=8)
    x += 1
    widths = [stem.out_channels]
    for s, (name, blocks) in enumerate(stages):
        for block in blocks:
            convs = [block.conv1, block.conv2] + ([block.conv3] if convs_per_block == 3 else [])
            x0 = x
            for c in convs:
                ax.bar(x, c.out_channels ** 0.5, color=STAGE_COLORS[s], width=0.8)
                widths.append(c.out_channels)
                x += 1
            kind = shortcut_kind(block)
            if kind is not None:
                h = max(widths) ** 0.5 + 1.5
                ax.add_patch(FancyArrowPatch((x0 - 0.6, h * 0.75), (x - 0.4, h * 0.75), arrowstyle="-|>",
                                             mutation_scale=6, lw=0.8, ls="-" if kind == "identity" else "--",
                                             connectionstyle="arc3,rad=-0.5", color="k"))
        ax.text(x - len(blocks) * convs_per_block / 2 - 0.5, -2.8, name, ha="center", fontsize=8)
    ax.bar(x, model.fc.in_features ** 0.5 * 0.5, color="#252525", width=0.8)
    ax.set_xlim(-1, x + 1)
    ax.set_ylim(-3.6, max(widths) ** 0.5 * 1.6 + 3)
    ax.set_yticks([])
    ax.set_xlabel("weight layer (bar height ~ sqrt(channels); last bar: fc)")
    ax.set_title(title or f"{n_layers}-layer network", fontsize=10)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return ax
