"""Notebook 01's highway stacks (Sec. 2, "Shortcut Connections") beside the plain and residual ones, over
seeds: their table and chart, each of the section's expectations through :func:`evidence.compare`, and the
sentence that says what the run shows. The rest of notebook 01's report is ``residual_report``."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .cifar_verdicts import CHANCE_PCT
from .evidence import CONTRADICTED, NOT_SHOWN, SHOWN, Verdict, compare, mean_std, mean_text

GATE_MOVED = 0.05  # a mean gate that changed by less than this over training did not move


def by_seed(highway) -> dict[int, list[dict]]:
    """One seed's ``highway_sweep`` list, or ``{seed: list}``, as ``{seed: list}``."""
    return highway if isinstance(highway, dict) else {0: highway}


def gates_text(highway) -> str:
    """Whether training moved the highway gates, stack by stack, said plainly: the mean gate at init and after
    (means over seeds when ``highway`` is ``{seed: highway_sweep}``); a gate moved when any seed's mean moved by
    :data:`GATE_MOVED` or more. Where the gates sat is all it says: not why a stack ended where it did."""
    seeds = by_seed(highway)
    by: dict[float, list[dict]] = {}
    for runs in seeds.values():
        for h in runs:
            by.setdefault(h["gate_bias"], []).append(h)
    mean = lambda hs, k: float(np.mean([h[k] for h in hs]))
    moved = {b: any(abs(h["gate_final"] - h["gate_init"]) >= GATE_MOVED for h in hs) for b, hs in by.items()}
    each = "; ".join(f"bias {b:+g}: {mean(hs, 'gate_init'):.2f} → {mean(hs, 'gate_final'):.2f}" for b, hs in by.items())
    over = f", mean over {len(seeds)} seeds" if len(seeds) > 1 else ""
    if not any(moved.values()):
        return (f"No mean gate moved by {GATE_MOVED:g} or more during training (mean gate T at init → after{over}, "
                f"{each}): on average each stack kept the mix of x and H(x) that its initial bias set. This says where "
                "the gates sat on average, not that they learned nothing: a mean over units and images can hide gates "
                "that moved both ways.")
    return (f"Mean gate T at init → after{over}: {each}; the gates of "
            + ", ".join(f"bias {b:+g}" for b, m in moved.items() if m)
            + f" moved by {GATE_MOVED:g} or more (in at least one seed), the others did not.")


# ----------------------------------------------------------------------------- the highway stacks over seeds

def highway_summary(highway_sweeps: dict[int, list[dict]], sweeps: dict[int, list[dict]] | None = None) -> list[dict]:
    """One row per highway stack (by gate bias): mean gate at init and after, params, training error (%) as
    mean and std over seeds and the per-seed ``errors``; then, from ``sweeps``, the plain and residual stacks of
    the highway depth where they were trained."""
    by: dict[float, list[dict]] = {}
    for runs in highway_sweeps.values():
        for h in runs:
            by.setdefault(h["gate_bias"], []).append(h)
    rows = []
    for b, hs in by.items():
        errs = [h["final"] for h in hs]
        m, sd = mean_std(errs)
        rows.append({"stack": f"highway, gate bias {b:+g}", "gate bias": b,
                     "mean gate T at init": float(np.mean([h["gate_init"] for h in hs])),
                     "mean gate T after": float(np.mean([h["gate_final"] for h in hs])), "params": hs[0].get("params"),
                     "train error % (mean)": m, "std over seeds": sd, "seeds": len(errs), "errors": errs})
    depth = next(iter(by.values()))[0].get("depth") if by else None
    for block in ("plain", "residual"):
        runs = [r for rs in (sweeps or {}).values() for r in rs if r["block"] == block and r["depth"] == depth]
        if runs:
            errs = [r["final"] for r in runs]
            m, sd = mean_std(errs)
            rows.append({"stack": f"{block}-{depth}", "gate bias": None, "mean gate T at init": None,
                         "mean gate T after": None, "params": runs[0].get("params"), "train error % (mean)": m,
                         "std over seeds": sd, "seeds": len(errs), "errors": errs})
    return rows


def plot_highway(summary: list[dict], epochs: int, depth: int, chance: float = CHANCE_PCT) -> Figure:
    """Training error of each highway stack and of the plain and residual ones of the same depth: bars at the
    mean over seeds with the std as error bars, chance dotted, the whole 0-100% range."""
    fig, ax = plt.subplots(figsize=(6, 3))
    means = [r["train error % (mean)"] for r in summary]
    bars = ax.barh([r["stack"] for r in summary], means, xerr=[r["std over seeds"] or 0 for r in summary],
                   color="#9ecae1", capsize=3)
    ax.bar_label(bars, labels=[f"{m:.1f}" for m in means], padding=4)
    ax.axvline(chance, color="0.4", ls=":", lw=1.2, label=f"chance ({chance:.0f}%)")
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel(f"training error after {epochs} epochs (%), depth {depth}")
    seeds = summary[0]["seeds"] if summary else 0
    ax.set_title(f"mean over {seeds} seed(s)" + (", bars: std" if seeds > 1 else ""), fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _reading(v: Verdict, shown: str, contradicted: str, inside: str) -> str:
    if v.status == SHOWN:
        return shown
    if v.status == CONTRADICTED:
        return contradicted
    return inside if v.inside_interval else "this run cannot tell"


def highway_checks(highway_sweeps: dict[int, list[dict]], sweeps: dict[int, list[dict]] | None) -> list[dict]:
    """What the highway section expected beside what the run shows, each through :func:`evidence.compare` over
    seeds: the most open gate (most negative bias) should train close to the residual stack of its depth, the
    most closed one (most positive bias) like the plain stack, and a gate in between between those two.
    One dict per expectation: ``expected``, ``status`` (compare's, for the gap it tested; None where the gate in
    between has its mean between the two and nothing was tested) and ``text`` (the expectation, what the run shows,
    and compare's sentence with the numbers)."""
    rows = highway_summary(highway_sweeps, sweeps)
    hw = sorted((r for r in rows if r["gate bias"] is not None), key=lambda r: r["gate bias"])
    ref = {r["stack"].split("-")[0]: r for r in rows if r["gate bias"] is None}
    if not hw:
        return []
    depth = next(iter(highway_sweeps.values()))[0].get("depth")
    name = lambda r: f"highway-{depth} (bias {r['gate bias']:+g})"
    out = []
    ends = [(hw[0], "residual", "open", "close to residual")] if hw[0]["gate bias"] < 0 else []
    ends += [(hw[-1], "plain", "closed", "like plain")] if hw[-1]["gate bias"] > 0 else []
    for h, block, how, expected in ends:
        if block not in ref:
            out.append({"expected": f"{how} gate {expected}-{depth}", "status": NOT_SHOWN,
                        "text": f"The {how} gate (bias {h['gate bias']:+g}) was expected to train {expected}-{depth}; "
                                f"{block}-{depth} was not trained here (the highway depth is not among the depths of "
                                "the degradation section), so this run cannot compare them."})
            continue
        b = ref[block]
        v = compare(f"{block}-{depth}", b["errors"], name(h), h["errors"], chance=CHANCE_PCT, digits=1)
        if block == "residual":
            said = _reading(v, f"it did not: residual-{depth} trained lower, by more than the interval",
                            f"it trained lower than residual-{depth}, by more than the interval",
                            f"no gap to residual-{depth} beyond the interval, as expected")
        else:
            said = _reading(v, f"it did not: it trained worse than plain-{depth}, by more than the interval",
                            f"it did not: it trained better than plain-{depth}, by more than the interval",
                            f"no gap to plain-{depth} beyond the interval, as expected (which does not make them equal)")
        out.append({"expected": f"{how} gate {expected}-{depth}", "status": v.status,
                    "text": f"The {how} gate (bias {h['gate bias']:+g}) was expected to train {expected}-{depth}; "
                            f"{said}. {v.text}"})
    return out + _between_checks(hw, name)


def _between_checks(hw: list[dict], name) -> list[dict]:
    """:func:`highway_checks`' expectation for each gate between the most open and the most closed: that its
    error lies between theirs; compared with the nearer one where its mean does not."""
    out = []
    if len(hw) <= 2:
        return out
    lo_r, hi_r = hw[0], hw[-1]
    lo_m, hi_m = sorted((lo_r["train error % (mean)"], hi_r["train error % (mean)"]))
    for h in hw[1:-1]:
        m = h["train error % (mean)"]
        head = (f"The gate in between (bias {h['gate bias']:+g}, {mean_text(h['errors'])}) was expected to train between "
                f"the biases {lo_r['gate bias']:+g} ({mean_text(lo_r['errors'])}) and {hi_r['gate bias']:+g} "
                f"({mean_text(hi_r['errors'])})")
        if lo_m <= m <= hi_m:
            out.append({"expected": "in between", "status": None,
                        "text": f"{head}; its mean is between theirs, as expected."})
            continue
        below = m < lo_m
        near = min((lo_r, hi_r), key=lambda r: abs(r["train error % (mean)"] - m))
        v = (compare(name(h), h["errors"], name(near), near["errors"], chance=CHANCE_PCT, digits=1) if below else
             compare(name(near), near["errors"], name(h), h["errors"], chance=CHANCE_PCT, digits=1))
        where = "below" if below else "above"
        said = _reading(v, f"it did not: its error is {where} both, the best of the highway stacks"
                           if below else f"it did not: its error is {where} both, the worst of the highway stacks",
                        "its error is between theirs after all",
                        f"its mean is {where} both, but within the interval of the nearer one")
        out.append({"expected": "in between", "status": v.status,
                    "text": f"{head}; {said}. {v.text}"})
    return out


def highway_text(highway_sweeps: dict[int, list[dict]], sweeps: dict[int, list[dict]] | None) -> str:
    """The highway section's reading in Markdown: each stack's training error (mean ± std over seeds), each
    expectation beside what the run shows (:func:`highway_checks`), and where the gates sat (:func:`gates_text`)."""
    rows = highway_summary(highway_sweeps, sweeps)
    n = len(highway_sweeps)
    head = ("Training error" + (f", mean ± std over {n} seeds" if n > 1 else " (one seed, so no spread)") + ": "
            + "; ".join(f"{r['stack']}: {mean_text(r['errors'])}" for r in rows) + ".")
    return "\n".join([head, ""] + [f"- {c['text']}" for c in highway_checks(highway_sweeps, sweeps)]
                     + ["", gates_text(highway_sweeps) + " The identity shortcut needs no such choice and no parameters."])
