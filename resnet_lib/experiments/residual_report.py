"""Notebook 01 beside the paper: its results rows and the verdict in words, computed from what the
experiments of ``residual_demo`` returned, and the gradient-flow figure and table.

``found`` holds those returns: ``degradation`` (``degradation_sweep``), ``zero_err`` (largest |block(x) - x|
with a zero branch), ``identity`` (``{(block, n_blocks): losses}`` from ``learn_identity``), ``flow``
(``flow_sweep``), ``gate_cost`` (records of ``gate_cost``, the 3x3-conv one first), ``highway``
(``highway_sweep``, the first seed), ``highway_sweeps`` (``{seed: highway_sweep}``, optional), ``sweeps``
(``{seed: degradation_sweep}``, optional) and ``multigrid`` (``multigrid_demo``). ``setting`` names the run's sizes: ``subset,
image_size, epochs, identity_steps, flow_batch, highway_depth``.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .cifar_verdicts import CHANCE_PCT
from .evidence import CHANCE_MARGIN, CONTRADICTED, SHOWN, compare, mean_text, near_chance

# the highway stacks' report lives in highway_report; notebook 01 and the tests call it as residual_report's
from .highway_report import (  # noqa: F401
    GATE_MOVED,
    by_seed,
    gates_text,
    highway_checks,
    highway_summary,
    highway_text,
    plot_highway,
)

MEAN_PREDICTOR_MSE = 1 - 2 / np.pi  # learning y = x for |N(0, 1)| inputs: predicting the mean scores 0.363


def final_errors(runs: list[dict]) -> dict[str, dict[int, float]]:
    """``{block: {depth: final training error}}``, depths ascending."""
    out: dict[str, dict[int, float]] = {}
    for r in sorted(runs, key=lambda r: r["depth"]):
        out.setdefault(r["block"], {})[r["depth"]] = r["final"]
    return out


def identity_mse(identity: dict) -> list[dict]:
    """Each identity-learning stack's final MSE (mean of its last 20 steps)."""
    return [{"block": b, "layers": 2 * n, "final MSE": float(np.mean(losses[-20:]))}
            for (b, n), losses in identity.items()]


def flow_ratios(flow: list[dict], block: str) -> dict[int, float]:
    """``{depth: first-layer / last-layer gradient norm}`` at initialisation for one block kind."""
    return {r["depth"]: r["grad_norm"][0] / r["grad_norm"][-1] for r in flow if r["block"] == block}


def flow_table(flow: list[dict]) -> list[dict]:
    return [{"net": f"{r['block']}-{r['depth']}", "grad first layer": r["grad_norm"][0],
             "grad last layer": r["grad_norm"][-1], "ratio first/last": r["grad_norm"][0] / r["grad_norm"][-1],
             "std first block": r["act_std"][0], "std last block": r["act_std"][-1], "loss": r["loss"]} for r in flow]


def plot_flow(flow: list[dict]) -> Figure:
    """Gradient norm of each 3x3 conv and std of each block's output at initialisation, input to output."""
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.8))
    for r in flow:
        style, label = ("--" if r["block"] == "plain" else "-"), f"{r['block']}-{r['depth']}"
        axs[0].plot(np.arange(1, len(r["grad_norm"]) + 1), r["grad_norm"], style, label=label)
        axs[1].plot(np.arange(1, len(r["act_std"]) + 1), r["act_std"], style, label=label)
    axs[0].set_yscale("log")
    axs[0].set_xlabel("3x3 conv layer (input -> output)")
    axs[0].set_ylabel("||dL/dW||")
    axs[1].set_xlabel("block (input -> output)")
    axs[1].set_ylabel("std of block output")
    axs[0].legend(fontsize=8)
    return fig


def _per_depth(values: dict[int, float], fmt: str, unit: str = "") -> str:
    return ", ".join(f"{d} layers {v:{fmt}}{unit}" for d, v in values.items())


def _two_grid_at_12(mg: dict) -> float:
    return mg["two_grid"][min(3, len(mg["two_grid"]) - 1)]  # the two-grid point at 12 fine-grid sweeps


def paper_rows(found: dict, setting: dict) -> list[dict]:
    """Notebook 01's rows for ``results.json`` (see the module docstring for ``found`` and ``setting``)."""
    final, s = final_errors(found["degradation"]), setting
    seeds = found.get("sweeps") or {}
    if len(seeds) > 1:  # the degradation rows carry the mean over seeds, as the verdicts do
        final = {}
        for r in degradation_summary(seeds):
            final.setdefault(r["block"], {})[r["depth"]] = r["train error % (mean)"]
    over = f", mean over {len(seeds)} seeds" if len(seeds) > 1 else ""
    shallow, deep = min(final["plain"]), max(final["plain"])
    residual_note = f"same stacks with identity shortcuts{over}"
    if seeds:
        v = residual_degradation(seeds)
        if v is not None:
            residual_note += f"; {v['short']}"
    hw = highway_summary(found.get("highway_sweeps") or {0: found["highway"]})
    hw_over = f", mean over {hw[0]['seeds']} seeds" if hw and hw[0]["seeds"] > 1 else ""
    mg, extra = found["multigrid"], found["gate_cost"][0]["extra_fraction"]
    flows = (("plain", flow_ratios(found["flow"], "plain")), ("residual", flow_ratios(found["flow"], "residual")))
    return [
        {"quantity": f"toy train error, plain-{shallow} -> plain-{deep}",
         "ours": f"{final['plain'][shallow]:.1f} -> {final['plain'][deep]:.1f}",
         "paper": "higher for deeper plain (Fig. 1: 20 vs 56 layers)", "unit": "%",
         "note": f"MLP stacks, {s['subset']} CIFAR images at {s['image_size']}x{s['image_size']}, {s['epochs']} epochs{over}"},
        {"quantity": f"toy train error, residual-{shallow} -> residual-{deep}",
         "ours": f"{final['residual'][shallow]:.1f} -> {final['residual'][deep]:.1f}",
         "paper": "no degradation (Fig. 4, 6)", "unit": "%", "note": residual_note},
        {"quantity": "max |block(x) - x| with zero branch", "ours": found["zero_err"], "paper": 0.0, "unit": "",
         "note": "Sec. 3.1: identity by construction"},
        *[{"quantity": f"identity-learning MSE, {r['block']} {r['layers']} layers", "ours": round(r["final MSE"], 4),
           "paper": None, "unit": "",
           "note": f"{s['identity_steps']} Adam steps; predicting the mean scores {MEAN_PREDICTOR_MSE:.3f}"}
          for r in identity_mse(found["identity"])],
        *[{"quantity": f"grad norm first/last 3x3 layer at init, {b}-{d}", "ours": round(v, 3), "paper": None,
           "unit": "ratio", "note": f"one batch of {s['flow_batch']}, train-mode BN"} for b, f in flows for d, v in f.items()],
        {"quantity": "highway gate parameters / residual block parameters", "ours": round(extra, 3), "paper": None,
         "unit": "fraction", "note": "3x3 conv gate; the identity shortcut has none (Sec. 3.2)"},
        *[{"quantity": f"toy train error, highway-{s['highway_depth']}, gate bias {r['gate bias']:+g}",
           "ours": round(r["train error % (mean)"], 1), "paper": None, "unit": "%",
           "note": f"positive bias = shortcut closed{hw_over}"} for r in hw],
        {"quantity": "relative residual after 12 sweeps: Jacobi vs two-grid",
         "ours": f"{mg['jacobi'][12]:.2e} vs {_two_grid_at_12(mg):.2e}", "paper": None, "unit": "",
         "note": "1-D Poisson, 127 points"},
    ]


def _chance_note(final: dict[str, dict[int, list[float]]], chance: float = CHANCE_PCT) -> str:
    """Which stacks ended near chance in any seed: those did not train, and so are not the paper's degradation
    (a deeper net that trains, to a higher error). ``final``: ``{block: {depth: [error per seed]}}``."""
    near = [f"{b}-{d} ({', '.join(f'{e:.1f}%' for e in errs)})" for b, by in final.items()
            for d, errs in sorted(by.items()) if any(near_chance(e, chance) for e in errs)]
    if not near:
        seeds = max(len(errs) for by in final.values() for errs in by.values())
        return (f"Every stack trained: none ended within {CHANCE_MARGIN:g} points of chance ({chance:.0f}%)"
                + (f" in any of the {seeds} seeds." if seeds > 1 else "."))
    return (f"Within {CHANCE_MARGIN:g} points of chance ({chance:.0f}%), so not trained at all: {', '.join(near)}; such a "
            "stack shows a net that fails to start, not the paper's degradation (a deeper net that trains, to a "
            "higher training error).")


def identity_text(identity: dict, margin: float = 0.05) -> str:
    """Which identity-learning stacks learned anything: a final MSE within ``margin`` (relative) of what
    predicting the mean scores means the stack learned nothing, which says more about the set-up than about
    the kind of stack."""
    parts, learned_nothing = [], []
    for m in identity_mse(identity):
        name = f"{m['block']}, {m['layers']} layers"
        if m["final MSE"] >= (1 - margin) * MEAN_PREDICTOR_MSE:
            learned_nothing.append(name)
            parts.append(f"{name}: {m['final MSE']:.4f}, no better than predicting the mean")
        else:
            parts.append(f"{name}: {m['final MSE']:.4f}, {MEAN_PREDICTOR_MSE / max(m['final MSE'], 1e-12):.3g} times "
                         "below the mean predictor")
    text = (f"Final MSE to y = x (predicting the mean scores {MEAN_PREDICTOR_MSE:.3f}): " + "; ".join(parts) + ".")
    if learned_nothing:
        text += (f" {' and '.join(learned_nothing)} learned nothing in this set-up, so this run does not show that a "
                 "plain stack *cannot* learn the identity, only that these steps did not teach it; the residual "
                 "block has it by construction (the zero branch above).")
    return text


def _stack_errors(found: dict) -> dict[str, dict[int, list[float]]]:
    """``{block: {depth: [final training error per seed]}}`` from ``found["sweeps"]`` (or the one seed of
    ``found["degradation"]``), depths ascending."""
    out: dict[str, dict[int, list[float]]] = {}
    for runs in (found.get("sweeps") or {0: found["degradation"]}).values():
        for r in runs:
            out.setdefault(r["block"], {}).setdefault(r["depth"], []).append(r["final"])
    return {b: dict(sorted(by.items())) for b, by in out.items()}


def verdict(found: dict) -> str:
    """What notebook 01's runs show, in Markdown bullets, with their numbers (means over seeds where
    ``found`` has ``sweeps`` / ``highway_sweeps``)."""
    errs, mg = _stack_errors(found), found["multigrid"]
    p, r = errs["plain"], errs["residual"]
    mean = lambda vals: float(np.mean(vals))
    best = min(p, key=lambda d: mean(p[d]))
    worst_r = max(r, key=lambda d: mean(r[d]))
    small = best > min(p)  # the shallowest plain stacks fit worse than a deeper one: too small for the images
    seeds = found.get("sweeps")
    n = len(seeds) if seeds else 1
    per = lambda by: ", ".join(f"{d} layers {mean_text(v)}" for d, v in by.items())
    degradation = (
        "- **Degradation (Sec. 1).** " + (f"Mean ± std over {n} seeds. " if n > 1 else "")
        + f"The plain stacks do best at {best} layers ({mean_text(p[best])}); by depth: {per(p)}. The residual stacks of "
        f"the same depths reach {per(r)}; the highest of them is residual-{worst_r}'s {mean_text(r[worst_r])}. "
        + ("(Stacks of only a few layers are simply too small to fit the images, plain or not.) " if small else "")
        + _chance_note(errs))
    if seeds:
        degradation += " Over all seeds: " + " ".join(v["text"] for v in degradation_verdicts(seeds))
    hw_seeds = found.get("highway_sweeps") or {0: found["highway"]}
    hw = highway_summary(hw_seeds)
    lines = [
        degradation,
        f"- **Residual vectors (Sec. 2).** After 12 fine-grid sweeps Jacobi alone leaves {mg['jacobi'][12]:.1e} of the "
        f"residual, the two-grid solver {_two_grid_at_12(mg):.1e}.",
        f"- **Highway (Sec. 2).** The gate adds {100 * found['gate_cost'][0]['extra_fraction']:.0f}% parameters to a "
        "block. Training error by initial gate bias" + (f" (mean ± std over {len(hw_seeds)} seeds)" if len(hw_seeds) > 1 else "")
        + ": " + ", ".join(f"{h['gate bias']:+g}: {mean_text(h['errors'])}" for h in hw) + ". "
        + " ".join(c["text"] for c in highway_checks(hw_seeds, seeds or {0: found["degradation"]}))
        + " " + gates_text(hw_seeds),
        f"- **Identity (Sec. 3.1).** A zero branch gives |block(x) - x| = {found['zero_err']:g}. "
        + identity_text(found["identity"]),
        "- **Gradient flow (Sec. 4.1).** First/last-layer gradient ratio at initialisation, plain: "
        + _per_depth(flow_ratios(found["flow"], "plain"), ".3g") + "; residual: "
        + _per_depth(flow_ratios(found["flow"], "residual"), ".3g") + ".",
        "",
        "These are toy MLP stacks trained briefly on small, downsampled images; the paper's claims are about conv "
        "nets trained to convergence, which notebook 03 shows from the project's shipped runs.",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the degradation sweep over seeds

def degradation_summary(sweeps: dict[int, list[dict]]) -> list[dict]:
    """Per (depth, block): the final training error (%) as mean and std over the sweeps' seeds."""
    by = {}
    for runs in sweeps.values():
        for r in runs:
            by.setdefault((r["depth"], r["block"]), []).append(r["final"])
    return [{"depth": d, "block": b, "train error % (mean)": float(np.mean(v)),
             "std over seeds": float(np.std(v, ddof=1)) if len(v) > 1 else None, "seeds": len(v)}
            for (d, b), v in sorted(by.items())]


def plot_degradation(summary: list[dict], epochs: int) -> Figure:
    """Training error against depth, plain and residual, mean over seeds with the std as error bars;
    chance dotted, the whole 0-100% range."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for block, style in (("plain", "o--"), ("residual", "s-")):
        rows = [r for r in summary if r["block"] == block]
        ax.errorbar([r["depth"] for r in rows], [r["train error % (mean)"] for r in rows],
                    yerr=[r["std over seeds"] or 0 for r in rows], fmt=style, capsize=3, label=block)
    ax.axhline(CHANCE_PCT, color="0.4", ls=":", lw=1.2, label="chance")
    depths = sorted({r["depth"] for r in summary})
    ax.set(xscale="log", ylim=(0, 100), xlabel="depth (weight layers)",
           ylabel=f"training error after {epochs} epochs (%)")
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.minorticks_off()
    ax.legend()
    ax.set_title(f"mean over {summary[0]['seeds']} seed(s), bars: std")
    return fig


def degradation_verdicts(sweeps: dict[int, list[dict]]) -> list[dict]:
    """Sec. 1's claim on the toy stacks, through :func:`evidence.compare` over seeds: the deepest plain stack
    ends above the next shallower plain one (degradation), and the deepest residual stack below the deepest
    plain one; a stack near chance is refused."""
    errs = {}
    for runs in sweeps.values():
        for r in runs:
            errs.setdefault(f"{r['block']}-{r['depth']}", []).append(r["final"])
    depths = sorted({int(k.split("-")[1]) for k in errs})
    if len(depths) < 2:
        return [{"claim": "degradation (Sec. 1)", "status": "not shown",
                 "text": "Not shown by this run: at least two depths are needed."}]
    d, hi = depths[-2], depths[-1]
    out = []
    for better, worse, claim in ((f"plain-{d}", f"plain-{hi}", f"plain-{hi} ends above plain-{d} (degradation, Sec. 1)"),
                                 (f"residual-{hi}", f"plain-{hi}", f"residual-{hi} ends below plain-{hi} (the shortcuts)")):
        v = compare(better, errs[better], worse, errs[worse], chance=CHANCE_PCT, digits=1)
        out.append({"claim": claim, "status": v.status, "text": v.text})
    res = residual_degradation(sweeps)
    if res is not None:
        out.append({k: res[k] for k in ("claim", "status", "text")})
    return out


def residual_degradation(sweeps: dict[int, list[dict]]) -> dict | None:
    """The residual stacks against the paper's "no degradation" (Fig. 4, 6): does the deepest residual stack
    end above the shallowest one, through :func:`evidence.compare` over seeds? ``claim``, ``status`` (compare's,
    for the degradation), ``text`` (a plain reading, then compare's sentence) and ``short`` (for the results
    table); None with fewer than two depths."""
    errs = {}
    for runs in sweeps.values():
        for r in runs:
            if r["block"] == "residual":
                errs.setdefault(r["depth"], []).append(r["final"])
    if len(errs) < 2:
        return None
    lo, hi = min(errs), max(errs)
    v = compare(f"residual-{lo}", errs[lo], f"residual-{hi}", errs[hi], chance=CHANCE_PCT, digits=1)
    if v.status == SHOWN:
        short = "degradation shown, unlike the paper's ResNets"
        said = (f"The residual stacks degrade in this run: residual-{hi} ends above residual-{lo} by more than the "
                "interval, which the paper does not find in its ResNets.")
    elif v.status == CONTRADICTED:
        short = "no degradation: the deeper one is lower, beyond the interval"
        said = (f"No degradation in the residual stacks: residual-{hi} ends below residual-{lo} by more than the "
                "interval, deeper is better, as in the paper's ResNets.")
    elif v.inside_interval:
        short = "no degradation shown (gap inside its interval)"
        said = (f"No degradation shown in the residual stacks, as the paper expects: the gap from residual-{lo} to "
                f"residual-{hi} is inside its interval, so this run cannot tell a small degradation from none.")
    else:
        short = "this run cannot say whether they degrade"
        said = "Whether the residual stacks degrade, this run cannot say."
    return {"claim": f"residual-{hi} ends above residual-{lo} (degradation in the residual stacks; the paper: none)",
            "status": v.status, "short": short,
            "text": f"{said} (Tested as the claim that residual-{hi} ends above residual-{lo}: {v.text})"}


def verdict_markdown(verdicts: list[dict]) -> str:
    return "\n".join(f"- **{v['claim']}**: {v['text']}" for v in verdicts)
