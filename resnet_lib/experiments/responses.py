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
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from ..base.device import autocast, pick_device, use_bf16
from ..data.cifar import TensorLoader, load_cifar10, stratified_indices
from ..engine.checkpoint import load_model
from .cifar_runs import CifarRun, list_runs, paper_recipe, run_cifar
from .evidence import CHANCE_MARGIN, NOT_SHOWN, SHOWN, Verdict, compare, diverged, near_chance

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
        self._batches = [[] for _ in self._bns]  # each batch's (sums, n), for the sampling error over batches
        self._handles = []

    def _hook(self, i):
        def hook(module, inputs, out):
            x = out.detach().double().transpose(0, 1).reshape(out.shape[1], -1)
            s = torch.stack([x.sum(1), (x * x).sum(1)])
            n = x.shape[1]
            self._batches[i].append((s.clone(), n))
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
        return np.array([_std(s, n, per_channel) for s, n in self._stats])

    def batch_stds(self, per_channel: bool = False) -> np.ndarray:
        """``(batches, layers)``: each batch's own std per layer, for the sampling error of a statistic."""
        if any(not b for b in self._batches):
            raise RuntimeError("no batch has gone through the network yet; run forward passes inside `with recorder:`")
        return np.array([[_std(s, n, per_channel) for s, n in layer] for layer in self._batches]).T


def _std(s: torch.Tensor, n: int, per_channel: bool) -> float:
    if per_channel:
        mean = s[0] / n
        return float((s[1] / n - mean ** 2).clamp_min(0).sqrt().mean())
    total = n * s.shape[1]
    mean = s[0].sum() / total
    return float((s[1].sum() / total - mean ** 2).clamp_min(0).sqrt())


@torch.no_grad()
def layer_responses(model: nn.Module, source, device="auto", precision="auto", per_channel: bool = False,
                    max_batches: int | None = None) -> np.ndarray:
    """Fig. 7's std of each 3x3 layer's response, for ``model`` in eval mode over a batch source (an object
    with ``batches(epoch)``, e.g. ``data.cifar.TensorLoader``) or an iterable of ``(X, y)`` / ``X`` tensors."""
    return _record(model, source, device, precision, max_batches).stds(per_channel)


def measure(model: nn.Module, source, device="auto", precision="fp32", per_channel: bool = False) -> dict:
    """Fig. 7's stds of ``model`` and what a verdict needs: the median over layers (the claims are about the
    typical layer) and its standard error from the test images' sampling, the spread of the median over the
    source's batches divided by the square root of their number (one trained net: no spread over seeds)."""
    rec = _record(model, source, device, precision, None)
    stds, per_batch = rec.stds(per_channel), np.median(rec.batch_stds(per_channel), axis=1)
    se = float(np.std(per_batch, ddof=1) / np.sqrt(len(per_batch))) if len(per_batch) > 1 else None
    return {"stds": [float(x) for x in stds], "median": float(np.median(stds)), "se": se,
            "batches": len(per_batch), "bn_scale": bn_scale(model)}


def bn_scale(model: nn.Module) -> float:
    """The median over the 3x3 layers' BNs of their mean |gamma|: 1 at initialisation, and moving (mostly
    shrinking, under weight decay) as training shapes the net."""
    return float(np.median([bn.weight.detach().abs().mean().item() for _, bn in conv3x3_bn_pairs(model)]))


@torch.no_grad()
def _record(model, source, device, precision, max_batches) -> "ResponseRecorder":
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
    return rec


def sorted_by_magnitude(stds: np.ndarray) -> np.ndarray:
    """Fig. 7 (bottom): the same stds in descending order."""
    return np.sort(np.asarray(stds))[::-1]


# ----------------------------------------------------------------------------- trained nets for Fig. 7

def stored_runs(root) -> dict[tuple[int, bool], list[dict]]:
    """The longest-trained finished CIFAR runs of each (depth, residual) under ``root`` (e.g. notebook 03's
    ``<OUT_DIR>/03_cifar10_plain_vs_residual/runs``): every seed of that one setting (runs whose identity
    differs only in the seed), in seed order; option-A shortcuts only, as in Fig. 7. Of two settings of equal
    length, the one with more seeds."""
    groups: dict[str, list[dict]] = {}
    if not Path(root).is_dir():
        return {}
    for r in list_runs(root):
        spec = r.get("spec") or {}
        if spec.get("kind", "cifar") != "cifar" or spec.get("shortcut", "A") != "A":
            continue
        ident = r.get("identity") or {"spec": spec, "train": dict(r["config"])}
        setting = json.dumps({**ident, "train": {k: v for k, v in ident["train"].items() if k != "seed"}},
                             sort_keys=True)
        groups.setdefault(setting, []).append(r)
    best: dict[tuple[int, bool], list[dict]] = {}
    for runs in groups.values():
        spec = runs[0]["spec"]
        key = (int(spec["depth"]), bool(spec.get("residual", True)))
        rank = lambda rs_: (rs_[0]["config"]["iters"], len(rs_))  # noqa: E731
        if key not in best or rank(runs) > rank(best[key]):
            best[key] = sorted(runs, key=_seed)
    return best


def _seed(run: dict) -> int:
    return int((run.get("identity") or {}).get("train", run["config"]).get("seed", 0))


def train_brief(depth: int, residual: bool, root, iters: int = 400, batch_size: int = 32, subset: int = 0,
                lr: float | None = 0.02, device="auto", progress: bool = True, data=None) -> dict:
    """A short run of the paper's recipe (Sec. 4.2, with the warm-up for 110 layers), through notebook 03's
    runner (``cifar_runs.run_cifar``), stored under ``root``; an existing one is reused. ``lr``: a constant
    learning rate, as notebook 03's short runs take (None: the paper's 0.1 with its drops at 50% and 75%).
    ``subset``: stratified training images (0: all 50k). Its test set is 500 stratified test images only,
    since this run exists for its layer responses, not its error."""
    cfg = dataclasses.replace(paper_recipe(depth).with_iters(iters), batch_size=batch_size, eval_every=iters,
                              checkpoint_every=0)
    if lr is not None:
        cfg = dataclasses.replace(cfg, lr=lr, milestones=())
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


def own_nets(depths, stored: dict, brief_root, source, *, iters: int = 400, batch_size: int = 32, subset: int = 0,
             lr: float | None = 0.02, device="auto", per_channel: bool = False, progress: bool = True,
             data=None) -> dict[str, dict]:
    """Notebook 04's own nets: for each depth a plain net and a ResNet, from ``stored`` (:func:`stored_runs`,
    every seed of the longest run of that net) where it has the net, else one brief run (:func:`train_brief`)
    under ``brief_root``. Each net's entry is :func:`measure`'s, averaged over its seeds (``stds`` layer by
    layer; ``median``, ``bn_scale`` and ``train_err_pct`` are the seeds' means), with the per-seed values
    beside it (``seeds``, ``medians``, ``bn_scales``, ``train_errs``), the setting (``iters``, ``lr``,
    ``batch``) and where it comes from (``origin``). With two seeds or more ``se`` is None: the verdicts then
    use the spread over seeds (:func:`fig7_verdicts`)."""
    out = {}
    for depth in depths:
        for residual in (False, True):
            runs, origin = stored.get((depth, residual)), "notebook 03 (short run)"
            if not runs:
                runs = [train_brief(depth, residual, brief_root, iters=iters, batch_size=batch_size, subset=subset,
                                    lr=lr, device=device, progress=progress, data=data)]
                origin = "trained here (brief run)"
            ms = [measure(load_model(r["run_dir"]), source, device=device, per_channel=per_channel) for r in runs]
            cfg = runs[0]["config"]
            out[net_label(depth, residual)] = {
                "stds": [float(x) for x in np.mean([m["stds"] for m in ms], axis=0)],
                "median": float(np.mean([m["median"] for m in ms])), "medians": [m["median"] for m in ms],
                "se": ms[0]["se"] if len(ms) == 1 else None, "batches": min(m["batches"] for m in ms),
                "bn_scale": float(np.mean([m["bn_scale"] for m in ms])), "bn_scales": [m["bn_scale"] for m in ms],
                "train_err_pct": float(np.mean([100 * r["final"]["train_err"] for r in runs])),
                "train_errs": [100 * r["final"]["train_err"] for r in runs],
                "test_err_pct": float(np.mean([100 * r["final"]["test_err"] for r in runs])),
                "seeds": [_seed(r) for r in runs], "origin": origin, "iters": cfg["iters"], "lr": cfg["lr"],
                "batch": cfg["batch_size"]}
    return out


# ----------------------------------------------------------------------------- beside the paper (notebook 04)

def net_label(depth: int, residual: bool) -> str:
    return f"{'ResNet' if residual else 'plain'}-{depth}"


def nets_table(nets: dict[str, dict]) -> list[dict]:
    """One row per net: where it comes from, how long it trained (and at what lr and batch, for a short run),
    its seeds, its final errors (%, the seeds' mean), its median response std and its BN scale."""
    rows = []
    for k, v in nets.items():
        row = {"net": k, "from": v["origin"], "iterations": v["iters"]}
        if "lr" in v:
            row |= {"lr": v["lr"], "batch": v["batch"]}
        if "seeds" in v:
            row["seeds"] = ", ".join(map(str, v["seeds"]))
        row |= {"training error %": round(v["train_err_pct"], 2), "test error %": round(v["test_err_pct"], 2),
                "median response std": round(v["median"], 3)}
        if "bn_scale" in v:
            row["BN scale (median of mean |gamma|, 1 at init)"] = round(v["bn_scale"], 3)
        rows.append(row)
    return rows


def own_title(nets: dict[str, dict]) -> str:
    """The title of the reader's own nets' panel, with how they trained: each setting (iterations, lr, batch)
    the nets share, one per distinct setting otherwise."""
    settings = sorted({(v["iters"], v.get("lr"), v.get("batch")) for v in nets.values()}, key=str)
    parts = [f"{it:,} iterations" + (f", lr {lr:g}" if lr is not None else "") + (f", batch {b}" if b else "")
             for it, lr, b in settings]
    return f"your short runs ({'; '.join(parts)})" if parts else "your short runs"


def drawable(stds: dict[str, list[float]], refused: tuple = ()) -> tuple[dict, list[str]]:
    """The nets that can share Fig. 7's linear axis, and those left out: diverged ones (a non-finite or
    exploding response, :func:`evidence.diverged`), whose values would flatten every other curve, and the
    ``refused`` names (nets the verdict does not count, e.g. near chance)."""
    keep = {k: v for k, v in stds.items() if not diverged(v) and k not in refused}
    return keep, [k for k in stds if k not in keep]


def refused(nets: dict[str, dict], chance: float = 90.0) -> list[str]:
    """The nets the figure leaves out: those the verdicts refuse as diverged or near chance on their training
    error. Nets refused only for BNs still at their initial scale are drawn: their curves near 1 show why."""
    return [name for name, net in nets.items() if _refusal(name, net, chance, init_scale=False)]


def at_initial_scale(nets: dict[str, dict], chance: float = 90.0) -> list[str]:
    """The nets drawn but refused by the verdicts: their BNs are still at their initial scale."""
    return [name for name, net in nets.items()
            if _refusal(name, net, chance) and not _refusal(name, net, chance, init_scale=False)]


def plot_fig7(panels: dict[str, dict[str, list[float]]], refused: tuple | dict = (), notes: dict | None = None):
    """Fig. 7 on the paper's linear scale: per panel (title -> {net name: per-layer stds}), the stds in layer
    order (top) and sorted by magnitude (bottom); plain nets dashed, ResNets solid, one colour per depth.
    Diverged nets and the ``refused`` ones (see :func:`refused`; a dict gives each panel's title its own, since
    the same name may be a trained net in one panel and an untrained one in another) are left out and named in
    the panel's title; ``notes`` (title -> text) adds a line to a panel's title. Panels of a row share their
    y-axis, so that nets from different panels compare by eye."""
    fig, axs = plt.subplots(2, len(panels), figsize=(6 * len(panels), 6.5), squeeze=False, sharey="row")
    for j, (title, stds) in enumerate(panels.items()):
        keep, left_out = drawable(stds, tuple(refused.get(title, ()) if isinstance(refused, dict) else refused))
        depths = sorted({int(n.split("-")[1]) for n in stds})
        for name, s in sorted(keep.items(), key=lambda kv: (int(kv[0].split("-")[1]), kv[0])):
            kw = dict(color=f"C{depths.index(int(name.split('-')[1]))}", ls="-" if name.startswith("ResNet") else "--",
                      label=name)
            axs[0, j].plot(np.arange(1, len(s) + 1), s, **kw)
            axs[1, j].plot(np.arange(1, len(s) + 1), sorted_by_magnitude(s), **kw)
        axs[0, j].set_title(title + (f"\n(not drawn, diverged or not learned: {', '.join(left_out)})" if left_out else "")
                            + (f"\n({notes[title]})" if notes and notes.get(title) else ""), fontsize=10)
        axs[0, j].set_xlabel("layer index (original order)")
        axs[1, j].set_xlabel("layer index (sorted by magnitude)")
        for ax in axs[:, j]:
            ax.set_ylabel("std")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        if keep:
            axs[0, j].legend(ncol=2, fontsize=8)
    fig.tight_layout()
    return fig


INIT_SCALE_TOL = 0.1   # a net whose BN scale (mean |gamma|) is within this of 1 is still at its initial scale


def _refusal(name: str, net: dict, chance: float, init_scale: bool = True) -> str | None:
    """Why ``net`` cannot count as evidence, else None: it diverged; or it is near chance on its training
    error (in any seed); or its BNs are still at their initial scale (gamma = 1, in any seed), where every
    BN's output has std near 1 whatever the architecture, so a gap says nothing about Fig. 7's trained nets."""
    errs = net.get("train_errs") or ([net["train_err_pct"]] if net.get("train_err_pct") is not None else [])
    if diverged(net["stds"]) or any(not math.isfinite(e) for e in errs):
        return f"{name} diverged (median response std {net['median']:.3g})"
    if any(near_chance(e, chance) for e in errs):
        return (f"{name} ends at {max(errs):.1f}% training error, within {CHANCE_MARGIN:g} points of "
                f"chance ({chance:.0f}%): it has not learned, so its responses say nothing about the trained net")
    scales = net.get("bn_scales") or ([net["bn_scale"]] if net.get("bn_scale") is not None else [])
    if init_scale and scales and any(abs(g - 1.0) <= INIT_SCALE_TOL for g in scales):
        return (f"{name}'s BNs are still at their initial scale (mean |gamma| "
                f"{', '.join(f'{g:.3f}' for g in scales)}, within {INIT_SCALE_TOL:g} of the initial 1)")
    return None


def fig7_verdicts(nets: dict[str, dict], chance: float = 90.0) -> list[dict]:
    """Fig. 7's two claims (Sec. 4.2) through :func:`evidence.compare`, on the median response std over
    layers: (1) at each depth the ResNet's is below the plain net's; (2) each deeper ResNet's is below the
    shallower one's. ``nets``: name ("ResNet-56") -> :func:`measure`'s dict plus ``train_err_pct``, or
    :func:`own_nets`' entry; a net :func:`_refusal` refuses (diverged, near chance, BN still at its initial
    scale) gives "not shown" for every claim it is in. Two nets with two seeds or more each are compared on
    the spread of their medians over seeds; otherwise on the test images' sampling, which says the
    measurement is precise but not that another seed would agree."""
    depths = sorted({int(n.split("-")[1]) for n in nets})
    pairs = [(f"ResNet-{d}", f"plain-{d}", "smaller than the plain net's") for d in depths
             if f"ResNet-{d}" in nets and f"plain-{d}" in nets]
    res = [d for d in depths if f"ResNet-{d}" in nets]
    pairs += [(f"ResNet-{b}", f"ResNet-{a}", "smaller than the shallower ResNet's") for a, b in zip(res, res[1:])]
    out = []
    for better, worse, claim in pairs:
        why = [w for w in (_refusal(better, nets[better], chance), _refusal(worse, nets[worse], chance)) if w]
        if why:
            v = Verdict(NOT_SHOWN, "Not shown by this run: " + "; ".join(why) + ".")
        else:
            a, b = nets[better], nets[worse]
            if min(len(a.get("medians", [])), len(b.get("medians", []))) >= 2:   # seeds: their spread
                v = compare(better, a["medians"], worse, b["medians"], unit="", digits=3)
            else:
                v = compare(better, [a["median"]], worse, [b["median"]], unit="", digits=3,
                            se=(a["se"] or 0.0, b["se"] or 0.0),
                            se_source=f"the test images' sampling alone, over {min(a['batches'], b['batches'])} "
                                      "batches; one trained net each, so the spread over seeds is not measured")
                if v.status == SHOWN:  # the same claim the README's scorecard counts as partly: say both
                    v = Verdict(SHOWN, f"Shown for these two nets, not over seeds: {v.numbers}. Another seed's "
                                       "nets could differ, so the README's scorecard counts this as partly reproduced.",
                                v.gap, v.interval, v.numbers)
        out.append({"claim": f"{better}'s responses {claim} ({worse})", "status": v.status, "text": v.text})
    return out


def verdict_markdown(verdicts: list[dict]) -> str:
    return "\n".join(f"- **{v['claim']}**: {v['text']}" for v in verdicts) or "- No pair of nets to compare."


def paper_rows(nets: dict[str, dict], verdicts: list[dict], label: str) -> list[dict]:
    """Notebook 04's rows for the main job's summary: each net's median response std, and each claim's
    verdict beside the paper's (Fig. 7 has no numbers, only the two claims)."""
    rows = [{"quantity": f"median response std, {name} ({label})", "ours": round(n["median"], 3), "paper": None,
             "unit": "", "note": f"{n['origin']}, {n['iters']} iterations"} for name, n in nets.items()]
    rows += [{"quantity": f"{v['claim']} ({label})", "ours": v["status"], "paper": "shown (Fig. 7)", "unit": "",
              "note": v["text"]} for v in verdicts]
    return rows
