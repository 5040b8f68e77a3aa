"""K CIFAR nets of one architecture trained as one wide network (issue #10: many nets at once on one GPU).

A ResNet-20 step at batch 128 leaves a big GPU mostly idle. Fusing K runs makes every kernel K times
wider instead of launching K times as many: each 3x3 conv becomes a grouped conv with K groups, each
BN a BN over K times the channels, the fc a batched matmul. Run k's channels are the k-th slice of
every layer, so nothing mixes between runs:

- a grouped conv's group k sees only run k's input channels;
- BN normalises each channel over the batch and positions, so run k's channels use run k's
  statistics (the running mean and variance too), exactly as alone;
- option A's zero-padded shortcut pads each run's slice on its own (``FusedZeroPad``);
- the input is the K runs' own images stacked along the channel axis, (B, 3K, H, W), and the output
  is (B, K, classes).

With the loss the *sum* of the K runs' losses, every parameter's gradient is exactly its own run's,
and SGD's momentum and weight decay act elementwise, so one SGD on the fused parameters is K
separate SGDs. ``fuse`` builds the wide net from K ordinary ``CifarNet`` (each keeps its own
initialisation) and ``unfuse`` splits it back, with identical parameter and buffer names.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import ZeroPadShortcut
from .cifar import CifarNet


class FusedZeroPad(nn.Module):
    """Option A for K runs side by side: subsample, then zero-pad each run's channel slice on its own."""

    def __init__(self, cin: int, cout: int, stride: int, k: int):
        super().__init__()
        self.cin, self.extra, self.stride, self.k = cin, cout - cin, stride, k

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        b, _, h, w = x.shape
        x = F.pad(x.reshape(b, self.k, self.cin, h, w), (0, 0, 0, 0, 0, self.extra))
        return x.reshape(b, self.k * (self.cin + self.extra), h, w)


class FusedLinear(nn.Module):
    """K fc layers at once: (B, K*in) -> (B, K, out), run k's features through run k's weights."""

    def __init__(self, k: int, in_features: int, out_features: int):
        super().__init__()
        self.k = k
        self.weight = nn.Parameter(torch.empty(k, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(k, out_features))

    def forward(self, x):
        x = x.reshape(x.shape[0], self.k, -1)
        return torch.einsum("bki,koi->bko", x, self.weight) + self.bias


def _widen(m: nn.Module, k: int) -> nn.Module:
    """The fused counterpart of one conv, BN or fc (its values are filled in by ``fuse``)."""
    if isinstance(m, nn.Conv2d):
        return nn.Conv2d(k * m.in_channels, k * m.out_channels, m.kernel_size, m.stride, m.padding,
                         m.dilation, k * m.groups, bias=m.bias is not None)
    if isinstance(m, nn.BatchNorm2d):
        return nn.BatchNorm2d(k * m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
    return FusedLinear(k, m.in_features, m.out_features)


def fuse(nets: list[CifarNet]) -> CifarNet:
    """One wide net computing all of ``nets`` at once (see the module docstring). The result is a
    ``CifarNet`` whose leaves are widened: its ``forward`` takes (B, 3K, H, W) and returns (B, K, classes);
    its state has each net's names, run k's values in slice k of dimension 0 (of each fc tensor: index k)."""
    if not nets:
        raise ValueError("fuse needs at least one net")
    names = sorted({n.spec.name for n in nets})
    if len({n.spec for n in nets}) != 1:
        raise ValueError(f"fuse needs nets of one architecture, got {names}; fuse the seeds of each one separately")
    k = len(nets)
    wide = copy.deepcopy(nets[0])
    for name, m in list(wide.named_modules()):
        parent, _, leaf = name.rpartition(".")
        owner = wide.get_submodule(parent)
        if isinstance(m, ZeroPadShortcut):
            block = nets[0].get_submodule(parent)  # the block this shortcut belongs to
            setattr(owner, leaf, FusedZeroPad(block.conv1.in_channels, block.conv1.out_channels, m.stride, k))
        elif isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            setattr(owner, leaf, _widen(m, k))
    wide.fused_k = k
    wide.to(nets[0].conv1.weight.dtype)
    wide.load_state_dict(fuse_states([n.state_dict() for n in nets], wide.state_dict()))
    return wide


def fuse_states(states: list[dict], like: dict) -> dict:
    """K nets' state dicts as one fused state shaped like ``like`` (a fused net's state dict)."""
    out = {}
    for key, ref in like.items():
        parts = [s[key] for s in states]
        if parts[0].ndim == 0:  # BN's num_batches_tracked: one count, the same in every run
            if any(int(p) != int(parts[0]) for p in parts):
                raise ValueError(f"{key} differs between the nets ({[int(p) for p in parts]}); fuse nets that "
                                 "have taken the same number of steps")
            out[key] = parts[0].clone()
        else:
            out[key] = torch.stack(parts) if ref.ndim == parts[0].ndim + 1 else torch.cat(parts)
    return out


def _fc_keys(wide: nn.Module) -> set[str]:
    return {f"{n}.{p}" for n, m in wide.named_modules() if isinstance(m, FusedLinear) for p in ("weight", "bias")}


def _parts(key: str, t: torch.Tensor, k: int, fc_keys: set[str]) -> list[torch.Tensor]:
    """Run k's share of a fused tensor named ``key`` (of a parameter, buffer or a parameter's optimizer state)."""
    t = t.detach()
    parts = [t] * k if t.ndim == 0 else (t.unbind(0) if key in fc_keys else t.chunk(k, 0))
    return [p.clone() for p in parts]


def split_state(wide: nn.Module) -> list[dict]:
    """The K runs' own state dicts, each loadable into an ordinary ``CifarNet`` of the same spec."""
    k, fc_keys = wide.fused_k, _fc_keys(wide)
    states = [{} for _ in range(k)]
    for key, t in wide.state_dict().items():
        for s, p in zip(states, _parts(key, t, k, fc_keys)):
            s[key] = p
    return states


def split_optimizer_state(wide: nn.Module, state: dict) -> list[dict]:
    """The K runs' own ``torch.optim`` state dicts (momentum buffers) from the fused optimizer's ``state``,
    each loadable into the optimizer of an ordinary net (same parameter order: the names are the same)."""
    k, fc_keys = wide.fused_k, _fc_keys(wide)
    names = [n for n, p in wide.named_parameters() if p.requires_grad]
    out = [{"state": {}, "param_groups": copy.deepcopy(state["param_groups"])} for _ in range(k)]
    for i, per_param in state["state"].items():
        for key, v in per_param.items():
            parts = _parts(names[i], v, k, fc_keys) if isinstance(v, torch.Tensor) else [v] * k
            for o, p in zip(out, parts):
                o["state"].setdefault(i, {})[key] = p
    return out


def fuse_optimizer_states(states: list[dict], wide: nn.Module) -> dict:
    """K ordinary nets' ``torch.optim`` state dicts (momentum buffers) as the fused net's: the inverse of
    ``split_optimizer_state``. The K optimizers must have the same settings."""
    k = wide.fused_k
    if len(states) != k:
        raise ValueError(f"{len(states)} optimizer states for a net fusing {k} runs")
    groups = [s["param_groups"] for s in states]
    if any(g != groups[0] for g in groups):
        raise ValueError("the runs' optimizers have different settings (learning rate, momentum, weight decay); "
                         "fuse runs at the same point of the same recipe")
    params = [p for p in wide.parameters() if p.requires_grad]
    keys = [set(s["state"]) for s in states]
    if any(ks != keys[0] for ks in keys):
        raise ValueError("the runs' optimizers hold state for different parameters; fuse runs that took steps")
    fused = {}
    for i in keys[0]:  # each parameter's state tensors (momentum) fused as the parameter itself is
        per_run = [s["state"][i] for s in states]
        tensors = [key for key, v in per_run[0].items() if isinstance(v, torch.Tensor)]
        fused[i] = {**per_run[0], **fuse_states([{key: st[key] for key in tensors} for st in per_run],
                                                {key: params[i] for key in tensors})}
    return {"state": fused, "param_groups": copy.deepcopy(groups[0])}


def unfuse(wide: nn.Module) -> list[CifarNet]:
    """The K ordinary nets inside a fused one, with their own weights and BN statistics."""
    nets = []
    with torch.random.fork_rng(devices=[]):  # building a net draws its (overwritten) init: leave the RNG alone
        for state in split_state(wide):
            net = CifarNet(wide.spec).to(wide.conv1.weight.dtype)
            net.load_state_dict(state)
            nets.append(net)
    return nets


def fused_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The sum over runs of each run's mean cross-entropy: out (B, K, classes), y (B, K). Summing (not
    averaging) gives every run's parameters exactly its own run's gradient."""
    b, k, c = out.shape
    # in fp32 whatever the logits' precision, and over rows of classes, as the engine's step computes it
    per_image = F.cross_entropy(out.float().reshape(b * k, c), y.reshape(b * k), reduction="none")
    return per_image.view(b, k).mean(0).sum()
