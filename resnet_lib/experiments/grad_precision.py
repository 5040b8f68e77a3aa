"""How far a bf16-autocast gradient is from the fp32 one, by depth (issue #10, part 5).

The shipped runs trained in bf16 autocast and the paper in fp32, and our error rises with depth from ResNet-32
on where the paper's falls. Training in fp32 answers whether precision is the cause; this measures, on a CPU in
about a minute, what bf16 does to the one thing SGD sees. For each net (the shipped final weights, and fresh
initialisations, where a deep net's gradient is least tame), on a few training batches of 128 augmented images:

- ``rel_err``: ||g_bf16 - g_fp32|| / ||g_fp32|| over every parameter, per batch (mean and std over batches);
- ``first_conv_rel_err``: the same for the first conv, the end of the longest backward path;
- ``err_cos``: the mean cosine between different batches' errors g_bf16 - g_fp32. Near 0, the error is noise that
  averages out over steps; clearly positive, it is a bias that accumulates;
- ``grad_cos``: the mean cosine between different batches' fp32 gradients. Near 0, the minibatch noise is larger
  than the gradient itself, and an error of ``rel_err`` adds little to it.

``python -m resnet_lib grad-precision --out results/cifar10/grad_precision.json`` writes it (with provenance);
notebook 03 and the README show it under Table 6.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..base.device import autocast, full_fp32, pick_device
from ..base.io import atomic_write_json, provenance
from ..data.cifar import load_cifar10, make_loaders
from ..models.cifar import cifar_resnet

INIT_DEPTHS = (20, 56, 110)
FILE = "grad_precision.json"


def gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool, device: torch.device) -> list[torch.Tensor]:
    """The gradient of the mean cross-entropy on one batch, in training mode (batch statistics), computed on a
    copy: ``net`` and its BN running statistics are left as they were."""
    n = copy.deepcopy(net).to(device).train()
    with autocast(device, bf16):
        loss = F.cross_entropy(n(x.to(device)).float(), y.to(device))
    return [g.detach().float().cpu() for g in torch.autograd.grad(loss, list(n.parameters()))]


def _mean_pair_cos(vectors: list[torch.Tensor]) -> float:
    cos = [float(F.cosine_similarity(a, b, dim=0)) for a, b in itertools.combinations(vectors, 2)]
    return sum(cos) / len(cos)


def measure_net(net: nn.Module, batches, device="cpu") -> dict:
    """bf16 against fp32 on ``batches`` (at least 2): see the module docstring for each number."""
    dev = pick_device(device)
    if len(batches) < 2:
        raise ValueError(f"measure_net needs at least 2 batches (errors are compared between batches), got {len(batches)}")
    rel, first, errs, fp32 = [], [], [], []
    for x, y in batches:
        g32, g16 = gradients(net, x, y, False, dev), gradients(net, x, y, True, dev)
        flat32, flat16 = torch.cat([g.flatten() for g in g32]), torch.cat([g.flatten() for g in g16])
        rel.append(float((flat16 - flat32).norm() / flat32.norm()))
        first.append(float((g16[0] - g32[0]).norm() / g32[0].norm()))
        errs.append(flat16 - flat32)
        fp32.append(flat32)
    r = torch.tensor(rel)
    return {"rel_err": float(r.mean()), "rel_err_std": float(r.std()), "first_conv_rel_err": sum(first) / len(first),
            "err_cos": _mean_pair_cos(errs), "grad_cos": _mean_pair_cos(fp32)}


def measure(root=None, n_batches: int = 4, seed: int = 0, device="cpu", data=None,
            init_depths=INIT_DEPTHS) -> dict:
    """Every shipped ResNet's final weights, then fresh ResNets of ``init_depths`` (seeded), on the first
    ``n_batches`` augmented training batches of 128 drawn with ``seed``."""
    from .shipped import default_root, shipped_nets
    dev = pick_device(device)
    full_fp32(dev)  # on a GPU, the fp32 reference must not run its convolutions in TF32
    train, _ = make_loaders(data or load_cifar10(), batch_size=128, seed=seed)
    it = train.batches(0)
    batches = [next(it) for _ in range(n_batches)]
    weights_dir = (Path(root) if root else default_root()) / "weights"
    rows = [{"net": name, "weights": "final weights", "weights_sha256": _sha256(weights_dir / f"{name}.pt"),
             **measure_net(net, batches, dev)} for name, net in shipped_nets(root).items() if name.startswith("ResNet")]
    for d in init_depths:
        torch.manual_seed(seed)
        rows.append({"net": f"ResNet-{d}", "weights": "initialisation", **measure_net(cifar_resnet(d), batches, dev)})
    return {"rows": rows, "batches": n_batches, "batch_size": 128, "seed": seed,
            "provenance": provenance(dev, command=f"python -m resnet_lib grad-precision --batches {n_batches} "
                                                  f"--seed {seed}")}


def grad_precision_text(path=None) -> str:
    """The measurement (default: the shipped one, ``results/cifar10/grad_precision.json``) as a Markdown table
    and what it says, or "" where none is stored."""
    if path is None:
        from .shipped import default_root
        path = default_root() / FILE
    path = Path(path)
    if not path.is_file():
        return ""
    m = json.loads(path.read_text())
    rows = m["rows"]
    lines = [f"bf16 autocast's gradient against fp32's (`{path.name}`; {m['batches']} training batches of "
             f"{m['batch_size']}, {m['provenance']['device']}, torch {m['provenance']['torch']}):", "",
             "| net | weights | error of the whole gradient % | error of the first conv's % | cos between batches' errors "
             "| cos between batches' fp32 gradients |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['net']} | {r['weights']} | {100 * r['rel_err']:.1f} ± {100 * r['rel_err_std']:.1f} | "
              f"{100 * r['first_conv_rel_err']:.1f} | {r['err_cos']:+.3f} | {r['grad_cos']:+.3f} |" for r in rows]
    lines += ["", _verdict(rows, n_batches=m["batches"])]
    stale = _stale(rows, path.parent / "weights")
    if stale:
        lines += ["", f"**Measured on shipped weights since replaced or added ({', '.join(stale)}): run `python -m "
                  f"resnet_lib grad-precision` again.**"]
    return "\n".join(lines)


def plot(path=None):
    """bf16 autocast's relative gradient error (%) against depth, at the shipped final weights and at fresh
    initialisations, with its std over the measured batches; None when nothing is shipped."""
    import matplotlib.pyplot as plt

    from .shipped import default_root
    path = Path(path) if path else default_root() / FILE
    if not path.is_file():
        return None
    rows = json.loads(path.read_text())["rows"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for weights, marker in (("initialisation", "o"), ("final weights", "s")):
        g = sorted((r for r in rows if r["weights"] == weights), key=lambda r: int(r["net"].split("-")[1]))
        if g:
            ax.errorbar([int(r["net"].split("-")[1]) for r in g], [100 * r["rel_err"] for r in g],
                        yerr=[100 * r["rel_err_std"] for r in g], marker=marker, capsize=3, label=weights)
    ax.set(xlabel="depth (ResNet, layers)", ylabel="bf16 gradient error vs fp32 (%)", ylim=(0, None),
           title="bf16 autocast's gradient error by depth (bars: std over batches)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stale(rows: list[dict], weights_dir: Path) -> list[str]:
    """The shipped ResNets whose weights differ from (or were not among) those a measurement used."""
    used = {r["net"]: r.get("weights_sha256") for r in rows if r["weights"] == "final weights"}
    now = {p.stem: _sha256(p) for p in sorted(weights_dir.glob("ResNet-*.pt"))}
    return [name for name, sha in now.items() if used.get(name) != sha]


def minibatch_noise(grad_cos: float) -> float | None:
    """The minibatch noise as a fraction of the gradient, from the cosine c between two batches' gradients
    g + n1 and g + n2 (independent noise of equal size): c = |g|^2 / (|g|^2 + |n|^2), so |n|/|g| = sqrt(1/c - 1).
    None where c is near 0 or below: the noise is larger than the gradient, by an amount c cannot tell."""
    return (1 / grad_cos - 1) ** 0.5 if grad_cos > 0.05 else None


def precision_section(root=None) -> str:
    """Notebook 03's and the README's precision section under Table 6: the fp32 against bf16 runs (once an fp32
    run is shipped), then each stored measurement (``grad_precision*.json``: this CPU's, and a GPU's from
    ``bench/gpu_session.sh``); "" before any."""
    from .shipped import default_root, precision_text
    root = Path(root) if root else default_root()
    texts = [precision_text(root)] + [grad_precision_text(p) for p in sorted(root.glob(f"{Path(FILE).stem}*.json"))]
    return "\n\n".join(t for t in texts if t)


def _verdict(rows: list[dict], bias: float = 0.1, n_batches: int | None = None) -> str:
    """What the rows say, in words computed from them. With ``n_batches`` (the batches each row's error is the
    mean of), a depth trend whose gap is inside twice its standard error is said to be inside the batch spread."""
    out, sizeable = [], False
    for weights in ("final weights", "initialisation"):
        g = sorted((r for r in rows if r["weights"] == weights), key=lambda r: int(r["net"].split("-")[1]))
        if not g:
            continue
        lo, hi = g[0], g[-1]
        gap = hi["rel_err"] - lo["rel_err"]
        grows = "grows" if gap > 0 else "does not grow"
        spread = ""
        if n_batches and n_batches > 1:
            se = ((lo["rel_err_std"] ** 2 + hi["rel_err_std"] ** 2) / n_batches) ** 0.5
            if abs(gap) <= 2 * se:
                grows = ("may grow" if gap > 0 else "may not grow") + " with depth; inside the batch spread"
                spread = (f"; the {100 * abs(gap):.1f}-point gap is inside twice its standard error over the "
                          f"{n_batches} batches ({100 * 2 * se:.1f} points)")
        if "inside" not in grows:
            grows += " with depth"
        text = (f"At the {weights}, bf16's gradient error {grows}: {100 * lo['rel_err']:.1f}% for {lo['net']}, "
                f"{100 * hi['rel_err']:.1f}% for {hi['net']} ({100 * hi['first_conv_rel_err']:.1f}% in its first conv)"
                f"{spread}.")
        noise = [minibatch_noise(r["grad_cos"]) for r in g]
        if all(n is None for n in noise):
            text += (" Two batches' fp32 gradients there are nearly orthogonal: SGD's own minibatch noise is larger "
                     "than the gradient, and bf16's error is small beside it.")
        elif all(n is not None for n in noise):
            ratio = max(r["rel_err"] / n for r, n in zip(g, noise))
            sizeable |= ratio > 0.25
            text += (f" Two batches' gradients there agree (cos {min(r['grad_cos'] for r in g):.2f} or more): the "
                     f"minibatch noise is {100 * min(noise):.0f}-{100 * max(noise):.0f}% of the gradient, and bf16's "
                     f"error is up to {ratio:.2f} times that noise.")
        out.append(text)
    worst = max(abs(r["err_cos"]) for r in rows)
    out.append(f"Between batches the errors are uncorrelated (|cos| at most {worst:.3f}): noise, not a bias."
               if worst < bias else
               f"Between batches the errors are correlated (|cos| up to {worst:.3f}): a bias, which accumulates over steps.")
    if sizeable and worst < bias:
        out.append("So if bf16 matters, it is early in training and in the deepest nets, where the noise it adds "
                   "is a sizeable part of SGD's own; late in training it is small beside it. The fp32 run of the "
                   "`table6` set decides.")
    return " ".join(out)


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m resnet_lib grad-precision", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=f"results/cifar10/{FILE}", help="the JSON file to write (atomically)")
    ap.add_argument("--batches", type=int, default=4, help="training batches of 128 (at least 2)")
    ap.add_argument("--seed", type=int, default=0, help="the batches' draw and the fresh nets' initialisation")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    if a.batches < 2:
        raise ValueError(f"--batches must be at least 2 (errors are compared between batches), got {a.batches}")
    out = Path(a.out)
    result = measure(n_batches=a.batches, seed=a.seed, device=a.device)
    atomic_write_json(out, result)
    print(grad_precision_text(out))
    return 0
