"""Layer responses (Sec. 4.2, "Analysis of Layer Responses", Fig. 7).

The paper plots "the standard deviations (std) of the layer responses. The responses are the outputs of
each 3x3 layer, after BN and before other nonlinearity (ReLU/addition)." Here a forward hook on the BN
that follows each 3x3 conv reads exactly that tensor: in a basic block, ``bn1``'s output (before the ReLU)
and ``bn2``'s output (before the addition); the stem conv's ``bn1`` comes first.

The std is taken over every element of the response (images, channels, positions) across the whole
evaluation set, accumulated in float64 (sums of x and x^2). The paper does not say which axes it pools;
``per_channel=True`` gives the mean over channels of each channel's std instead.

The hooks find their layers by the order of registration, so they work for any network written in
torchvision's order (conv before its BN): the CIFAR nets of ``models.cifar`` and the ImageNet ones alike.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from ..base.device import autocast, pick_device, use_bf16
from ..data.cifar import TensorLoader, load_cifar10, stratified_indices
from .cifar_runs import CifarRun, list_runs, paper_recipe, run_cifar

BRIEF_TEST_IMAGES = 500  # the test set of train_brief: enough for a response std, not for an error


def conv3x3_bn_pairs(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """``(name of the 3x3 conv, the BN that normalises it)`` for every 3x3 conv, in layer order."""
    pairs, pending = [], None
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            pending = name if m.kernel_size == (3, 3) else None
        elif isinstance(m, nn.BatchNorm2d) and pending is not None:
            if m.num_features != model.get_submodule(pending).out_channels:
                raise ValueError(f"{name} does not normalise {pending}'s output; the network does not register "
                                 "each BN right after its conv (torchvision's order)")
            pairs.append((pending, m))
            pending = None
    if not pairs:
        raise ValueError("no 3x3 conv followed by a BatchNorm2d found: layer responses (Fig. 7) are defined for "
                         "nets with BN after each 3x3 conv")
    return pairs


class ResponseRecorder:
    """Accumulates each hooked layer's sum, sum of squares and count (per channel), over many batches."""

    def __init__(self, model: nn.Module):
        self.names = [name for name, _ in conv3x3_bn_pairs(model)]
        self._bns = [bn for _, bn in conv3x3_bn_pairs(model)]
        self._stats = [None] * len(self._bns)
        self._handles = []

    def _hook(self, i):
        def hook(module, inputs, out):
            x = out.detach().double().transpose(0, 1).reshape(out.shape[1], -1)
            s = torch.stack([x.sum(1), (x * x).sum(1)])
            n = x.shape[1]
            if self._stats[i] is None:
                self._stats[i] = [s, n]
            else:
                self._stats[i][0] += s
                self._stats[i][1] += n
        return hook

    def __enter__(self):
        self._handles = [bn.register_forward_hook(self._hook(i)) for i, bn in enumerate(self._bns)]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []

    def stds(self, per_channel: bool = False) -> np.ndarray:
        """One std per hooked layer, in layer order (see the module docstring for the two definitions)."""
        if any(s is None for s in self._stats):
            raise RuntimeError("no batch has gone through the network yet; run forward passes inside `with recorder:`")
        out = []
        for (s, n) in self._stats:
            if per_channel:
                mean = s[0] / n
                var = (s[1] / n - mean ** 2).clamp_min(0)
                out.append(var.sqrt().mean().item())
            else:
                total = n * s.shape[1]
                mean = s[0].sum() / total
                out.append(float((s[1].sum() / total - mean ** 2).clamp_min(0).sqrt()))
        return np.array(out)


@torch.no_grad()
def layer_responses(model: nn.Module, source, device="auto", precision="auto", per_channel: bool = False,
                    max_batches: int | None = None) -> np.ndarray:
    """Fig. 7's std of each 3x3 layer's response, for ``model`` in eval mode over a batch source (an object
    with ``batches(epoch)``, e.g. ``data.cifar.TensorLoader``) or an iterable of ``(X, y)`` / ``X`` tensors."""
    dev = pick_device(device)
    model = model.to(dev).eval()
    batches = source.batches(0) if hasattr(source, "batches") else source
    rec = ResponseRecorder(model)
    with rec, autocast(dev, use_bf16(dev, precision)):
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(dev))
    return rec.stds(per_channel)


def sorted_by_magnitude(stds: np.ndarray) -> np.ndarray:
    """Fig. 7 (bottom): the same stds in descending order."""
    return np.sort(np.asarray(stds))[::-1]


# ----------------------------------------------------------------------------- trained nets for Fig. 7

def stored_runs(root) -> dict[tuple[int, bool], dict]:
    """The longest-trained finished CIFAR run of each (depth, residual) under ``root`` (e.g. notebook 03's
    ``<OUT_DIR>/03_cifar10_plain_vs_residual/runs``); option-A shortcuts only, as in Fig. 7."""

    best = {}
    if not Path(root).is_dir():
        return best
    for r in list_runs(root):
        spec = r.get("spec") or {}
        if spec.get("kind", "cifar") != "cifar" or spec.get("shortcut", "A") != "A":
            continue
        key = (int(spec["depth"]), bool(spec.get("residual", True)))
        if key not in best or r["config"]["iters"] > best[key]["config"]["iters"]:
            best[key] = r
    return best


def train_brief(depth: int, residual: bool, root, iters: int = 30, batch_size: int = 64, subset: int = 5000,
                device="auto", progress: bool = True, data=None) -> dict:
    """A short run of the paper's recipe (Sec. 4.2, with the warm-up for 110 layers) on a stratified subset,
    through notebook 03's runner (``cifar_runs.run_cifar``), stored under ``root``; an existing one is reused.
    Its test set is 500 stratified test images only, since this run exists for its layer responses, not its
    error."""
    cfg = dataclasses.replace(paper_recipe(depth).with_iters(iters), batch_size=batch_size, eval_every=iters,
                              checkpoint_every=0)
    data = data or load_cifar10()
    keep = stratified_indices(data.y_test, BRIEF_TEST_IMAGES, seed=0)
    small = dataclasses.replace(data, x_test=data.x_test[keep], y_test=data.y_test[keep])
    dev = pick_device(device)
    run = CifarRun(depth, residual, "A", cfg, subset=subset).resolved(dev)
    res = run_cifar(run, root, dev, progress=progress, data=small)
    return {**res, "run_dir": str(Path(root) / run.slug)}


def response_source(n: int = 500, batch_size: int = 250, device="cpu", data=None):
    """A batch source over ``n`` stratified CIFAR-10 test images, normalised as in training (per-pixel mean)."""
    data = data or load_cifar10()
    mean = data.x_train.float().div_(255).mean(0, keepdim=True)
    keep = stratified_indices(data.y_test, n, seed=0)
    return TensorLoader(data.x_test[keep], data.y_test[keep], batch_size, mean=mean, device=device)


# ----------------------------------------------------------------------------- beside the paper (notebook 04)

def net_label(depth: int, residual: bool) -> str:
    return f"{'ResNet' if residual else 'plain'}-{depth}"


def plot_responses(stds: dict[tuple[int, bool], np.ndarray], depths: list[int]):
    """Fig. 7: each net's response stds in layer order (top) and sorted by magnitude (bottom), log scale."""
    fig, axs = plt.subplots(2, 1, figsize=(9, 6.5))
    colors = dict(zip(depths, ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]))
    for (d, r), s in stds.items():
        kw = dict(color=colors[d], ls="-" if r else "--", label=net_label(d, r))
        axs[0].plot(np.arange(1, len(s) + 1), s, **kw)
        axs[1].plot(np.arange(1, len(s) + 1), sorted_by_magnitude(s), **kw)
    axs[0].set_xlabel("layer index (original order)")
    axs[1].set_xlabel("layer index (sorted by magnitude)")
    for ax in axs:
        ax.set_ylabel("std")
        ax.set_yscale("log")
    axs[0].legend(ncol=3, fontsize=8)
    fig.tight_layout()
    return fig


def response_summary(stds: dict[tuple[int, bool], np.ndarray], depths: list[int]) -> list[dict]:
    """Per depth: the plain and the residual net's median response std, and whether the ResNet's is smaller."""
    out = []
    for d in depths:
        p, r = float(np.median(stds[(d, False)])), float(np.median(stds[(d, True)]))
        out.append({"depth": d, "plain median std": p, "ResNet median std": r, "ResNet < plain": r < p})
    return out


def _deeper_smaller(summary: list[dict]) -> bool:
    medians = [s["ResNet median std"] for s in summary]
    return all(a > b for a, b in zip(medians, medians[1:]))


def paper_rows(summary: list[dict], nets: dict[tuple[int, bool], dict]) -> list[dict]:
    """Notebook 04's rows: Fig. 7 has no numbers, only two claims, (1) a ResNet's responses are smaller than
    its plain twin's and (2) deeper ResNets have smaller responses; ``nets`` gives each net's origin and length."""
    rows = []
    for s in summary:
        d, plain, res = s["depth"], nets[(s["depth"], False)], nets[(s["depth"], True)]
        rows.append({"quantity": f"median response std, plain-{d}", "ours": round(s["plain median std"], 3),
                     "paper": None, "unit": "", "note": f"{plain['origin']}, {plain['iters']} iterations"})
        rows.append({"quantity": f"median response std, ResNet-{d}", "ours": round(s["ResNet median std"], 3),
                     "paper": "smaller than plain (Fig. 7)", "unit": "", "note": f"{res['origin']}, {res['iters']} iterations"})
    smaller = sum(s["ResNet < plain"] for s in summary)
    rows.append({"quantity": "ResNet responses smaller than plain, depths", "ours": f"{smaller}/{len(summary)}",
                 "paper": f"{len(summary)}/{len(summary)}", "unit": "", "note": "median over layers"})
    rows.append({"quantity": "deeper ResNet has smaller responses", "ours": "yes" if _deeper_smaller(summary) else "no",
                 "paper": "yes", "unit": "", "note": "ResNet-" + " > ResNet-".join(str(s["depth"]) for s in summary)})
    return rows


def verdict(summary: list[dict], nets: dict[tuple[int, bool], dict], brief_iters: int) -> str:
    """What notebook 04's measurements show, in Markdown bullets; ``brief_iters``: length of the runs trained here."""
    lines = [
        f"- ResNet responses are smaller than the plain net's at {sum(s['ResNet < plain'] for s in summary)} of "
        f"{len(summary)} depths (median std: " + "; ".join(
            f"{s['depth']} layers: plain {s['plain median std']:.2f}, ResNet {s['ResNet median std']:.2f}"
            for s in summary) + ").",
        f"- Deeper ResNets have smaller responses: **{'yes' if _deeper_smaller(summary) else 'no'}** (median std by "
        "depth " + ", ".join(f"{s['depth']}: {s['ResNet median std']:.2f}" for s in summary)
        + "; the paper has them decreasing).",
    ]
    if any(n["origin"] == "trained here" for n in nets.values()):
        lines.append(
            f"- Some nets were trained for only {brief_iters} iterations here. After so few steps the BN scales have "
            "hardly moved from 1 and the running statistics lag the weights, so the responses say more about how "
            "training *starts* than about the converged nets of Fig. 7; plain nets of 56 and 110 layers in particular "
            "may have diverged or be unstable. Run notebook 03 with the paper's schedule (or larger `ITERS`) for the "
            "real comparison.")
    return "\n".join(lines)
