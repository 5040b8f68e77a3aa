"""The precision study's evidence: its records read back, the rule that decides (:func:`decide`), the default
that follows (:func:`chosen`), and the table, figure, costs and section that show them (docs/precision.md,
notebook 03's "Precision and depth"). The study's training and export are in ``precision_study``."""
from __future__ import annotations

import json
from pathlib import Path

from ..base.paths import project_root
from ..base.precision import POLICIES
from ..engine.state import device_names
from ..experiments import evidence
from ..experiments.cifar_grid import CHANCE_PCT

DECIDING = ("ResNet-56", "ResNet-110")   # the nets whose depth trend the shipped bf16 runs lost
CUT = 4_000                               # iterations: inside the lr-0.1 phase, where the gap opened
STUDY_POLICIES = ("fp32", "bf16", "bf16-conv")   # and "tf32" on a GPU
FAITHFUL, NOT_FAITHFUL, UNDECIDED = "faithful", "not faithful", "undecided"
# Points of early training error a faithful policy may cost at a deciding depth, at the far end of its interval:
# "faithful" is a claim that the harm is small, so it needs an interval that rules out more, not merely a gap
# inside a wide one (a policy whose seeds scatter widely must not pass more easily for it). The gaps the study is
# about are several points (the first bf16 ResNet-56 against its fp32 probe, and ResNet-20 against ResNet-56).
TOLERANCE = 1.0


def load_records(root=None) -> list[dict]:
    """The records in one export folder (default results/precision/runs)."""
    root = Path(root) if root else project_root() / "results" / "precision" / "runs"
    return [json.loads(p.read_text()) for p in sorted(root.glob("*.json"))]


def all_records(root=None) -> list[dict]:
    """Every committed record under ``root`` (default results/precision): ``runs/`` (the campaign's export)
    and each ``<study>/runs/`` (a study exported on its own, e.g. on one CPU), a run exported twice kept once."""
    root = Path(root) if root else project_root() / "results" / "precision"
    seen, out = set(), []
    for folder in [root / "runs", *sorted(p for p in root.glob("*/runs") if p.is_dir())]:
        for r in load_records(folder):
            key = (r.get("group"), r.get("slug"), device_of(r))
            if key not in seen:
                seen.add(key)
                out.append(r)
    return out


def device_of(rec: dict, cut: int | None = None) -> str:
    """Where ``rec`` trained (up to ``cut``): its device, or its devices joined by " + " when it moved; a GPU
    run that did not replay its step from a CUDA graph says "(eager)", the CPU's code path, so that the table
    and the rule keep it apart from the graphed runs of the same GPU."""
    where = device_names(rec["pieces"], cut) or "unrecorded device"
    eager = (rec.get("identity") or {}).get("train", {}).get("cuda_graph") == "off"
    return f"{where} (eager)" if eager and not where.startswith(("cpu", "unrecorded")) else where


def early_error(rec: dict, cut: int = CUT) -> float | None:
    """Training error (%) over the stretch that ends at ``cut`` (the curve point there); None before it."""
    h = rec["history"]
    return 100 * h["train_err"][h["iteration"].index(cut)] if cut in h["iteration"] else None


def window(records: list[dict], cut: int = CUT) -> str:
    """The iterations the early training error covers: from the curve point before ``cut`` to ``cut``."""
    for r in records:
        its = r["history"]["iteration"]
        if cut in its:
            return f"{([0] + its)[its.index(cut)]:,}-{cut:,}"
    return f"up to {cut:,}"


def early_errors(records: list[dict], cut: int = CUT, device: str | None = None) -> dict:
    """{(net, policy): [early training error of each seed that reached ``cut``]}, seeds in order; only the
    runs that trained on ``device`` (:func:`device_of`) when it is given."""
    out: dict = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        if device is not None and device_of(r, cut) != device:
            continue
        if (v := early_error(r, cut)) is not None:
            out.setdefault((r["net"], r["policy"]), []).append(v)
    return out


def devices(records: list[dict], cut: int = CUT) -> list[str]:
    """The devices the records trained on to ``cut``, each run on one (a run that moved between devices is
    no same-device comparison)."""
    return sorted({device_of(r, cut) for r in records if early_error(r, cut) is not None} - {""},
                  key=lambda d: (" + " in d, d))


def decide(records: list[dict], cut: int = CUT) -> dict:
    """{policy: (status, [one sentence per deciding net and device])} for every policy but fp32 (see the
    module docstring). Each comparison is on one device, fp32 against the policy in runs that trained there
    alone: not faithful when a deep net is worse beyond the interval on some device; faithful when both deep
    nets are measured over seeds on some device and, for each, the gap plus its interval is at most
    :data:`TOLERANCE`; undecided otherwise."""
    out = {}
    for policy in sorted({r["policy"] for r in records} - {"fp32"}):
        statuses, said = [], []
        for dev in (d for d in devices(records, cut) if " + " not in d):
            errs = early_errors(records, cut, dev)
            if not any((net, policy) in errs and (net, "fp32") in errs for net in DECIDING):
                continue
            verdicts = {net: evidence.compare(f"{net} in fp32", errs.get((net, "fp32"), []), f"{net} in {policy}",
                                              errs.get((net, policy), [])) for net in DECIDING}
            if any(v.status == evidence.SHOWN for v in verdicts.values()):
                statuses.append(NOT_FAITHFUL)  # worse than fp32 beyond the interval in a deep net
            elif all(_bounded(v) for v in verdicts.values()):
                statuses.append(FAITHFUL)      # both nets measured over seeds, any harm ruled out beyond TOLERANCE
            else:
                statuses.append(UNDECIDED)
            said += [f"On {dev}: {v.text}" + _bound_text(v) for v in verdicts.values()]
        if not said:
            said = [f"No device has trained {' or '.join(DECIDING)} in both fp32 and {policy} yet."]
        status = next((st for st in (NOT_FAITHFUL, FAITHFUL) if st in statuses), UNDECIDED)
        out[policy] = (status, said)
    return out


def _bounded(v: evidence.Verdict) -> bool:
    """Measured over seeds, and worse than fp32 by at most TOLERANCE even at the far end of the interval."""
    return v.interval is not None and v.gap is not None and v.gap + v.interval <= TOLERANCE


def _bound_text(v: evidence.Verdict) -> str:
    if v.interval is None or v.gap is None or v.status == evidence.SHOWN:
        return ""
    return (f" At worst {v.gap + v.interval:+.2f} points (gap plus interval): "
            + (f"within the rule's tolerance of {TOLERANCE:g}." if _bounded(v) else
               f"more than the rule's tolerance of {TOLERANCE:g}, so more seeds are needed to call it faithful."))


def chosen(decision: dict, cost_ms: dict[str, float]) -> str:
    """The fastest faithful policy by ``cost_ms`` (policy -> ms per iteration on one device kind); fp32, the
    paper's, is faithful by definition."""
    faithful = ["fp32"] + [p for p, (status, _) in decision.items() if status == FAITHFUL]
    return min(faithful, key=lambda p: cost_ms.get(p, float("inf")) if p != "fp32" else cost_ms.get(p, 0.0))


def cost_kind(cost: dict) -> str:
    """The device kind (``base.precision.AUTO``'s key) a cost measurement speaks for: "cuda", "cpu-bf16" (a CPU
    with fast bf16) or "cpu" (one without, or one capped to stand in for it)."""
    if "gpu" in cost:
        return "cuda"
    return "cpu-bf16" if cost.get("cpu_path", {}).get("fast_bf16") else "cpu"


KINDS = {"cuda": "a GPU", "cpu-bf16": "a CPU with fast bf16", "cpu": "a CPU without"}


def defaults(decision: dict, costs: list[dict], net: str = "ResNet-56") -> dict[str, str]:
    """What "auto" should mean on each device kind: the fastest faithful policy by that kind's measured step of
    ``net`` (fp32 where no faster faithful policy was measured there)."""
    return {kind: chosen(decision, {r["policy"]: r["ms_per_iter"] for c in costs if cost_kind(c) == kind
                                    for r in c["rows"] if r["net"] == net}) for kind in KINDS}


def _depth(net: str) -> int:
    return int(net.split("-")[1])


def _nets(errs: dict) -> list[str]:
    """The nets measured, ResNets by depth then plain nets by depth."""
    return sorted({n for n, _ in errs}, key=lambda n: (n.startswith("plain"), _depth(n)))


def across_devices(records: list[dict], cut: int = CUT) -> list[str]:
    """One bullet per net, seed and policy trained on more than one device: the same computation, initialisation
    and data order, so the gap is the devices' arithmetic (and their code paths) alone. Not part of the rule."""
    runs: dict = {}
    for r in records:
        if (v := early_error(r, cut)) is not None:
            runs.setdefault((r["net"], r["seed"], r["policy"]), {})[device_of(r, cut)] = v
    out = []
    for (net, seed, policy), by in sorted(runs.items(), key=lambda kv: (_depth(kv[0][0]), kv[0][1:])):
        if len(by) > 1:
            out.append(f"- {net}, seed {seed}, {policy}, on {len(by)} devices: " + ", ".join(
                f"{e:.2f}% on {d}" for d, e in sorted(by.items(), key=lambda kv: kv[1]))
                + f" ({max(by.values()) - min(by.values()):.2f} points apart: the same seed and policy, so this gap "
                  "is the devices' arithmetic and code paths, one seed; not counted by the rule).")
    return out


def table_rows(records: list[dict], cut: int = CUT) -> list[dict]:
    """Net by policy by device: early training error mean ± std (n seeds), and the gap to fp32 on the same
    device."""
    rows = []
    per_device = {dev: early_errors(records, cut, dev) for dev in devices(records, cut)}
    nets = _nets({k: None for errs in per_device.values() for k in errs})
    for net in nets:
        for policy in POLICIES:
            for dev, errs in per_device.items():
                if (net, policy) not in errs:
                    continue
                m, s = evidence.mean_std(errs[(net, policy)])
                ref = errs.get((net, "fp32"))
                gap = "" if policy == "fp32" or not ref else f"{m - evidence.mean_std(ref)[0]:+.2f}"
                rows.append({"net": net, "policy": policy, "trained on": dev,
                             f"train err {window(records, cut)} (%)": f"{m:.2f}" + (f" ± {s:.2f}" if s is not None else ""),
                             "seeds": len(errs[(net, policy)]), "vs fp32 on that device (points)": gap})
    return rows


def plot(records: list[dict], cut: int = CUT):
    """Early training error against depth, one line per policy and device (ResNets; plain nets as open
    squares), error bars over seeds where there are several."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    lines = [(policy, dev, errs) for dev in devices(records, cut) if (errs := early_errors(records, cut, dev))
             for policy in POLICIES if any(k[1] == policy for k in errs)]
    depths = set()
    for i, (policy, dev, errs) in enumerate(lines):
        shift = (i - (len(lines) - 1) / 2) * 1.5  # side by side at each depth
        for residual, style in ((True, dict(marker="o", ls="-")), (False, dict(marker="s", ls=":", mfc="none"))):
            nets = [n for n in _nets(errs) if (n, policy) in errs and n.startswith("plain") != residual]
            if nets:
                ms = [evidence.mean_std(errs[(n, policy)]) for n in nets]
                depths.update(_depth(n) for n in nets)
                ax.errorbar([_depth(n) + shift for n in nets], [m for m, _ in ms], yerr=[s or 0 for _, s in ms],
                            color=f"C{i}", capsize=3, label=f"{'ResNets' if residual else 'plain nets'}, {policy}, {dev}",
                            **style)
    ax.set(xlabel="depth (layers)", ylabel=f"training error, iterations {window(records, cut)} (%)",
           title="Early training error by depth, precision and device\n(bars: std over seeds where n > 1)",
           xticks=sorted(depths))
    ax.axhline(CHANCE_PCT, color="0.4", ls=":", lw=1.2)
    ax.annotate("chance", (0.99, CHANCE_PCT), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8,
                color="0.4")
    ax.set_ylim(0, 100)  # the whole scale: gaps of a few points are not magnified
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def load_costs(root=None) -> list[dict]:
    """Every committed cost measurement (``bench/precision_cost.py --out results/precision/cost_<kind>.json``)."""
    root = Path(root) if root else project_root() / "results" / "precision"
    return [json.loads(p.read_text()) for p in sorted(root.glob("cost_*.json"))]


def _cost_key(c: dict) -> str:
    if "gpu" in c:
        return c["gpu"]
    path = c.get("cpu_path", {})
    stand_in = str(path.get("onednn_max_isa", "")).upper() == "AVX2"  # a bf16 CPU capped to stand in for AVX2
    return f"CPU, {path.get('onednn_isa', '?')}" + ("" if path.get("fast_bf16") else " (no fast bf16)") + \
        (", stood in for with ONEDNN_MAX_CPU_ISA=AVX2" if stand_in else "")


def cost_table(costs: list[dict]) -> str:
    """ms per step of each net in each policy, one column per device kind (markdown)."""
    if not costs:
        return ""
    cols = [_cost_key(c) for c in costs]
    cells = {}
    for col, c in zip(cols, costs):
        for r in c["rows"]:
            ips = r["img_per_s"]  # a slow CPU's 16.5 img/s is not rounded to 16
            cells[(r["net"], r["policy"], col)] = f"{r['ms_per_iter']:.0f} ms ({ips:,.0f} img/s)" if ips >= 100 else \
                f"{r['ms_per_iter']:.0f} ms ({ips:.1f} img/s)"
    keys = sorted({(n, p) for n, p, _ in cells}, key=lambda k: (_depth(k[0]), list(POLICIES).index(k[1])))
    lines = ["| net | policy | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    lines += [f"| {n} | {p} | " + " | ".join(cells.get((n, p, col), "") for col in cols) + " |" for n, p in keys]
    loads = "; ".join(f"{col}: load average {c.get('load_average_1min_at_end', '?')} at the end, {c.get('step', '')}"
                      .rstrip(", ") for col, c in zip(cols, costs))
    return "\n".join(lines) + f"\n\nOne SGD step of batch 128, every policy in the same run, fastest of its rounds ({loads})."


def paired_lines(records: list[dict], cut: int = CUT) -> list[str]:
    """Outside the rule: each policy against fp32 seed by seed, on one device at a time. The two runs of a seed
    share their initialisation and data order, so the difference of a pair is the precision's alone, which the
    rule's means over seeds blur with the seeds' own spread. One bullet per device and policy."""
    out = []
    for dev in (d for d in devices(records, cut) if " + " not in d):
        err = {(r["net"], r["policy"], r["seed"]): v for r in records
               if device_of(r, cut) == dev and (v := early_error(r, cut)) is not None}
        for policy in sorted({p for _, p, _ in err} - {"fp32"}):
            pairs = {}
            for net, p, seed in sorted(err, key=lambda k: (k[0].startswith("plain"), _depth(k[0]), k[2])):
                if p == policy and (net, "fp32", seed) in err:
                    pairs.setdefault(net, []).append((seed, err[net, p, seed] - err[net, "fp32", seed]))
            if pairs:
                nets = "; ".join(f"{net} " + ", ".join(f"{d:+.2f}" for _, d in ps) +
                                 f" (seed{'s' * (len(ps) > 1)} {', '.join(str(s) for s, _ in ps)})" for net, ps in pairs.items())
                out.append(f"- Seed by seed, {policy} minus fp32 on {dev} (points of early training error; the same "
                           f"initialisation and data order in both; outside the rule): {nets}.")
    return out


def depth_lines(records: list[dict], cut: int = CUT) -> list[str]:
    """Outside the rule: on each device and in each policy, does the deeper ResNet train faster early than the
    shallower one (Fig. 6 middle's order), over seeds? One bullet per pair of ResNet depths with two seeds or
    more each, through :func:`evidence.compare`; the issue's question is whether a deeper ResNet falling behind
    early is the precision's doing, so fp32's own order is the baseline."""
    out = []
    for dev in (d for d in devices(records, cut) if " + " not in d):
        errs = early_errors(records, cut, dev)
        for policy in sorted({p for _, p in errs}, key=lambda p: (p != "fp32", p)):
            nets = sorted((n for n, p in errs if p == policy and n.startswith("ResNet-") and len(errs[n, p]) >= 2),
                          key=lambda n: int(n.split("-")[1]))
            for shallow, deep in zip(nets, nets[1:]):
                v = evidence.compare(f"{deep} in {policy}", errs[deep, policy], f"{shallow} in {policy}",
                                     errs[shallow, policy], chance=CHANCE_PCT)
                out.append(f"- Depth, early (outside the rule, and no claim of the paper, whose depth order is at the "
                           f"end of training), on {dev}, the deeper against the shallower: {v.text}")
    return out


def decision_text(records: list[dict], cut: int = CUT, costs: list[dict] | None = None) -> str:
    """Each policy's status under the rule, with the verdicts behind it, the runs trained on several devices,
    the policies not run yet, and the default that follows on each device kind by its ``costs`` (default: the
    committed ones) (markdown bullets and a sentence)."""
    decision = decide(records, cut)
    said = [f"- **{p}: {status}.** " + " ".join(why) for p, (status, why) in decision.items()]
    said += paired_lines(records, cut) + across_devices(records, cut) + depth_lines(records, cut)
    untried = [p for p in STUDY_POLICIES if p != "fp32" and p not in decision]
    if untried:
        said.append(f"- **{', '.join(untried)}: not run yet.**")
    by_kind = defaults(decision, load_costs() if costs is None else costs)
    head = "\n\nSo the default (`precision=\"auto\"`, the campaign's Table 6, the CLI's paper recipe) is "
    if set(by_kind.values()) == {"fp32"}:
        return "\n".join(said) + head + "**fp32** on every device, the paper's own, until a faster policy is shown faithful."
    kinds = "; ".join(f"**{p}** on {KINDS[k]}" for k, p in by_kind.items())
    return "\n".join(said) + head + f"the fastest policy shown faithful on each kind of device, by its measured cost: {kinds}."


def section(root=None, cut: int = CUT) -> str:
    """"Precision and depth", in words computed from the committed records: the table, the rule and each
    policy's status under it, the default that follows, the cost of each policy, and what is still to run."""
    root = Path(root) if root else project_root() / "results" / "precision"
    records = all_records(root)
    if not records:
        return "No run of the precision study is committed yet (`python -m resnet_lib precision-study --export`)."
    rows = table_rows(records, cut)
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    costs = load_costs(root)
    text = [f"Training error over iterations {window(records, cut)} of the paper's recipe (lr 0.1; ResNet-110 after "
            "its warm-up at 0.01), by net, precision policy and the device the runs trained on, the same seed, "
            "initialisation and data order in every policy:", "", *lines, "",
            "± is the standard deviation over the seeds the next column counts (none with one seed); the gap to fp32 "
            "is between the means.", "",
            f"The rule: fp32 is the paper's precision and faithful by definition. Another policy is not faithful "
            f"when, on one device, {' or '.join(DECIDING)} trains worse in it than in fp32 by more than the interval "
            "(twice the standard error of the gap, over at least two seeds each); faithful when, for both, the gap "
            f"plus that interval is at most {TOLERANCE:g} point of early training error (so the runs rule out any "
            "larger harm, not merely fail to show one); undecided otherwise. Runs on different devices are not "
            "compared: their gap mixes the precision with the device's arithmetic.", "", decision_text(records, cut, costs)]
    if costs:
        text += ["", "What each policy costs:", "", cost_table(costs)]
    return "\n".join(text)
