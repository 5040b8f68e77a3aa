"""Section 4.2's experiment: plain versus residual nets on CIFAR-10 (Fig. 6, Table 6).

Plans a grid of runs (validated before anything trains), trains or reloads them, and turns the
results into the paper's figure and table. Notebook 03 narrates it; ``python -m resnet_lib train``
runs single points.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt

from ..base.device import pick_device
from ..base.paper import cifar_table6, targets
from ..data.cifar import load_cifar10
from ..engine.config import epochs_to_iters
from ..models.cifar import cifar_resnet, count_parameters
from .cifar_runs import CifarRun, paper_recipe, run_cifar

# the claims' verdicts live in cifar_verdicts; notebook 03 and the tests call them as cifar_grid's
from .cifar_verdicts import CHANCE_PCT, depth_verdicts, own_run_summary, train_images_behind, trained_on, verdict_markdown  # noqa: F401
from .evidence import CHANCE_MARGIN, near_chance

NETS = ("plain", "resnet")


def plan_runs(depths, nets=NETS, *, subset: int = 0, epochs: float = 0, iters: int = 0, lr: float = 0.1,
              batch_size: int = 128, evals: int = 10, seed: int = 0, shortcut: str = "A",
              val_split: bool = False, precision: str = "auto", test_subset: int = 0, final_on_subset: bool = False,
              lr_drops=(0.5, 0.75), warmup: bool | None = None) -> list[CifarRun]:
    """Every run of the grid, checked up front: bad depths, net kinds, sizes or budgets fail here,
    before minutes of training. ``iters`` wins over ``epochs``; 0 for both means the paper's 64k.
    ``lr_drops``: fractions of the run at which the lr is divided by 10 (the paper: 32k and 48k of 64k).
    ``warmup``: lr 0.01 until training error < 80% (None: as the paper, for 110 layers and deeper).
    ``final_on_subset``: the final test error on the ``test_subset`` images too (else on all 10k)."""
    bad = [n for n in nets if n not in NETS]
    if bad:
        raise ValueError(f"unknown net kind(s) {bad}; use 'plain' and/or 'resnet'")
    if not depths:
        raise ValueError("no depths given; the paper's are 20, 32, 44, 56 and 110")
    if iters < 0 or epochs < 0:
        raise ValueError(f"iterations and epochs must be positive (got iters={iters}, epochs={epochs}); "
                         "0 for both means the paper's 64k iterations")
    if evals < 1:
        raise ValueError(f"evals (evaluations per run) must be at least 1, got {evals}")
    drops = [float(f) for f in lr_drops]
    if any(not 0 < f < 1 for f in drops) or drops != sorted(set(drops)):
        raise ValueError(f"lr_drops must be increasing fractions of the run between 0 and 1, got {list(lr_drops)}; "
                         "the paper's are [0.5, 0.75]")
    limit = 45_000 if val_split else 50_000
    n_train = subset or limit
    runs = []
    for depth in depths:
        base = paper_recipe(depth)
        if iters:
            cfg = base.with_iters(int(iters))
        elif epochs:
            cfg = base.with_iters(epochs_to_iters(epochs, n_train, batch_size))
        else:
            cfg = base
        milestones = tuple(sorted({max(1, round(f * cfg.iters)) for f in drops}))
        if warmup is not None:
            cfg = dataclasses.replace(cfg, warmup=bool(warmup))
        # evaluations every ceil(iters / evals) iterations: with the floor, 400 iterations and 6 evaluations left a
        # last window of 4 iterations (128 images) behind the final training error, which then swung by seeds
        cfg = dataclasses.replace(cfg, lr=lr, batch_size=batch_size, seed=seed, precision=precision, milestones=milestones,
                                  eval_every=max(1, -(-cfg.iters // evals)), checkpoint_every=max(1, cfg.iters // 4))
        for net in nets:
            runs.append(CifarRun(depth, net == "resnet", shortcut, cfg, subset, val_split, test_subset=test_subset,
                                 final_on_subset=final_on_subset))
    return runs


def train_runs(runs: list[CifarRun], root: str | Path, device="auto", force: bool = False,
               progress: bool = True) -> list[dict]:
    """Train each run, or reload it when it is stored already (``force`` retrains)."""
    data = None
    out = []
    dev = pick_device(device)
    for run in runs:
        stored = (Path(root) / run.resolved(dev).slug / "result.json").exists()
        if data is None and (force or not stored):
            data = load_cifar10()
        out.append(run_cifar(run, root, device=dev, progress=progress, data=data, force=force))
    return out


def error_set(result: dict) -> str:
    """What a run's held-out error measures: "validation" for a 45k/5k split (Section 4.2), else "test"."""
    return "validation" if result.get("eval_set") == "val5k" else "test"


def results_table(results: list[dict]) -> list[dict]:
    """One row per run: final training and test error beside Table 6 (the paper has no table for
    plain nets: they appear only as Fig. 6's curves)."""
    paper = cifar_table6()
    rows = []
    for r in results:
        s = r["spec"]
        rows.append({"net": r["name"], "depth": s["depth"], "residual": s["residual"],
                     "params": count_parameters(cifar_resnet(s["depth"], s["shortcut"], s["residual"])),
                     "iters": r["config"]["iters"], "train_images": r.get("train_examples"),
                     "train_err_pct": round(100 * r["final"]["train_err"], 2),
                     "test_err_pct": round(100 * r["final"]["test_err"], 2), "error_set": error_set(r),
                     "paper_test_err_pct": paper.get(s["depth"]) if s["residual"] else None,
                     "wall_s": r["wall_s"]})
    return rows


def final_errors(results: list[dict]) -> list[dict]:
    """One row per run: net, seed, length, final training and held-out error (%)."""
    return [{"net": r["name"], "seed": r["config"]["seed"], "iterations": r["config"]["iters"],
             "training error %": round(100 * r["final"]["train_err"], 2),
             f"{error_set(r)} error %": round(100 * r["final"]["test_err"], 2),
             **({"trained on": t} if (t := trained_on(r)) else {})} for r in results]


def _chance(ax, chance: float = CHANCE_PCT):
    ax.axhline(chance, color="0.4", ls=":", lw=1.2)
    ax.annotate("chance", (0.99, chance), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                fontsize=8, color="0.4")


def plot_curves(results: list[dict], names=None, axes=None, smooth: bool = False, ylim=(0, 100)):
    """Fig. 6: error (%) against iterations, training error dashed and test error bold; plain nets on
    the left, ResNets on the right, one colour per depth; chance (90%) dotted, the whole range by default."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    else:
        fig = axes[0].figure
    depths = sorted({r["spec"]["depth"] for r in results})
    colors = dict(zip(depths, plt.cm.viridis_r([0.15 + 0.7 * i / max(1, len(depths) - 1) for i in range(len(depths))])))
    seen = set()
    for ax, residual in zip(axes, (False, True)):
        for r in results:
            if r["spec"]["residual"] != residual or (names is not None and r["name"] not in names):
                continue
            h, c = r["history"], colors[r["spec"]["depth"]]
            label = None if r["name"] in seen else r["name"]
            seen.add(r["name"])
            ax.plot(h["iteration"], [100 * e for e in h["train_err"]], "--", color=c, lw=1)
            ax.plot(h["iteration"], [100 * e for e in h["test_err"]], "-", color=c, lw=2.2, label=label)
        ax.set_title("ResNets" if residual else "plain nets")
        ax.set_xlabel("iteration")
        ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
        if ylim[1] > CHANCE_PCT:
            _chance(ax)
        if ax.lines:
            held = {error_set(r) for r in results}
            ax.legend(title=f"bold: {' / '.join(sorted(held))}, dashed: train", fontsize=8, title_fontsize=8,
                      loc="upper right" if ylim[1] <= CHANCE_PCT else "center right")
    axes[0].set_ylabel("error (%)")
    fig.suptitle("CIFAR-10 training (Fig. 6 of the paper)")
    fig.tight_layout()
    return fig


def plot_fig6(results: list[dict], title: str):
    """Fig. 6 in the paper's layout (plain nets left, ResNets right; training error dashed, test error bold),
    twice: the whole range with chance (top), and the paper's own axis, 0-20% (bottom)."""
    fig, axs = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    plot_curves(results, axes=axs[0])
    plot_curves(results, axes=axs[1], ylim=(0, 20))
    for j, ax in enumerate(axs[1]):
        residual = j == 1  # plot_curves: plain nets left, ResNets right
        above = [r["name"] for r in results if r["spec"]["residual"] == residual and
                 100 * min(r["history"]["train_err"][-1], r["final"]["test_err"]) > 20]
        ax.set_title(ax.get_title() + ", the paper's axis (0-20%)"
                     + (f"\n{', '.join(above)} ends above it: see the panel above" if above else ""))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_fig1(shallow: dict, deep: dict, what: str = ""):
    """Fig. 1: a shallow and a deep plain net, training error (left) and test error (right), chance dotted."""
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, key, what in zip(axs, ("train_err", "test_err"), ("training error (%)", f"{error_set(deep)} error (%)")):
        for r, c in ((shallow, "tab:orange"), (deep, "tab:red")):
            ax.plot(r["history"]["iteration"], [100 * e for e in r["history"][key]], color=c, label=r["name"])
        ax.set_xlabel("iteration")
        ax.set_ylabel(what)
        ax.set_ylim(0, 100)
        _chance(ax)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Fig. 1: {shallow['name']} against {deep['name']}" + (f" ({what})" if what else ""))
    fig.tight_layout()
    return fig


def paper_rows(table: list[dict]) -> list[dict]:
    """Rows for the main job's summary: our test error beside Table 6 (the mean over seeds where a net was run
    with several), parameters beside Table 6's."""
    params = targets()["cifar10_params_paper"]
    by = {}
    for t in table:
        by.setdefault(t["net"], []).append(t)
    rows = []
    for net, ts in by.items():
        t = ts[0]
        held = t.get("error_set", "test")
        note = f"{t['iters']} iterations on {t['train_images']} images" + \
            (f"; mean of {len(ts)} seeds" if len(ts) > 1 else "") + \
            ("" if t["residual"] else "; paper: curves only (Fig. 6)") + \
            ("; ours on the 5k validation split, the paper's is test error" if held == "validation" else "")
        rows.append({"quantity": f"{net} {held} error", "ours": round(sum(x["test_err_pct"] for x in ts) / len(ts), 2),
                     "paper": t["paper_test_err_pct"], "unit": "%", "note": note})
        if t["residual"]:
            rows.append({"quantity": f"{net} parameters", "ours": t["params"],
                         "paper": params.get(str(t["depth"])), "unit": "", "note": "Table 6"})
    return rows


# ---------------------------------------------------------------- the stored calibration of the defaults

def calibration_dir() -> Path:
    """Where the runs that justify notebook 03's defaults are stored (committed, small JSON files)."""
    from ..base.paths import project_root
    return project_root(Path(__file__).parent) / "results" / "calibration" / "nb03"


def load_calibration(folder: str | Path | None = None) -> list[dict]:
    """Every calibration run (``bench/calibrate_nb03.py``) under ``folder``, each with its file's setting."""
    import json
    rows = []
    for p in sorted(Path(folder or calibration_dir()).glob("*.json")):
        rec = json.loads(p.read_text())
        for r in rec["runs"]:
            rows.append({**r, **rec["setting"], "file": p.name})
    return rows


def calibration_table(folder: str | Path | None = None) -> list[dict]:
    """One row per setting, precision and seed with all four nets: their final training errors (%), the two gaps
    (deep minus shallow) that the notebook's story rests on, with the CPU path the runs took."""
    groups: dict[tuple, dict] = {}
    for r in load_calibration(folder):
        key = (r["subset"], r["batch"], r["iters"], r["lr"], r["cpu_path"]["precision"], r["seed"])
        g = groups.setdefault(key, {"train images": r["subset"], "batch": r["batch"], "iterations": r["iters"],
                                    "lr": r["lr"], "precision": r["cpu_path"]["precision"],
                                    "oneDNN ISA": r["cpu_path"]["onednn_isa"], "seed": r["seed"]})
        g[r["name"]] = round(100 * r["train_err"], 1)
    rows = []
    for g in groups.values():
        if not all(k in g for k in ("plain-20", "plain-56", "ResNet-20", "ResNet-56")):
            continue  # an interrupted calibration: the story needs all four nets
        g["plain: 56 minus 20"] = round(g["plain-56"] - g["plain-20"], 1)
        g["ResNet: 56 minus 20"] = round(g["ResNet-56"] - g["ResNet-20"], 1)
        g["shows the paper's story"] = g["plain: 56 minus 20"] > 1 and g["ResNet: 56 minus 20"] <= 0
        rows.append(g)
    return sorted(rows, key=lambda g: (g["lr"], g["batch"], g["iterations"], g["precision"], g["seed"]))


CALIBRATION_NETS = ("plain-20", "plain-56", "ResNet-20", "ResNet-56")


def _near_chance_note(rs: list[dict]) -> str:
    """How many of one setting's calibration runs notebook 03's rule would refuse: a run with a net that ended
    within ``CHANCE_MARGIN`` points of chance, which has not trained (``evidence.near_chance``)."""
    near = {n: sum(near_chance(r[n], CHANCE_PCT) for r in rs if r.get(n) is not None) for n in CALIBRATION_NETS}
    refused = sum(any(r.get(n) is not None and near_chance(r[n], CHANCE_PCT) for n in CALIBRATION_NETS) for r in rs)
    if not refused:
        return ""
    return (f" By notebook 03's rule (a net within {CHANCE_MARGIN:g} points of chance, {CHANCE_PCT:.0f}%, has not "
            f"trained and is not counted) {refused} of these {len(rs)} runs would be refused: "
            + ", ".join(f"{n} ended near chance in {k}" for n, k in near.items() if k) + ".")


def calibration_summary(rows: list[dict], *, lr: float, batch_size: int, iters: int, subset: int) -> str:
    """A sentence per stored setting: on how many of its seeds and precisions the story held, and the
    range of the two gaps; the setting the notebook runs with is named first."""
    settings: dict[tuple, list[dict]] = {}
    for r in rows:
        if "shows the paper's story" in r:
            settings.setdefault((r["lr"], r["batch"], r["iterations"], r["train images"]), []).append(r)
    if not settings:
        return "No complete calibration run (all four nets) is stored."
    current = (lr, batch_size, iters, subset)
    lines = []
    for key in sorted(settings, key=lambda k: k != current):
        rs = settings[key]
        held = sum(bool(r["shows the paper's story"]) for r in rs)
        p = [r["plain: 56 minus 20"] for r in rs]
        q = [r["ResNet: 56 minus 20"] for r in rs]
        paths = ", ".join(sorted({r["precision"] for r in rs}))
        seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in rs}))
        name = ("Notebook 03's defaults" if key == current
                else f"lr {key[0]:g}, batch {key[1]}, {key[2]} iterations, {key[3]} images")
        lines.append(f"- {name}: the story held in {held} of {len(rs)} runs (seeds {seeds}; {paths}). Plain-56 minus "
                     f"plain-20: {min(p):+.1f} to {max(p):+.1f} points; ResNet-56 minus ResNet-20: "
                     f"{min(q):+.1f} to {max(q):+.1f} points." + _near_chance_note(rs))
    if current not in settings:
        lines.insert(0, "- No stored calibration run has notebook 03's parameters; the rows below are other settings.")
    return "\n".join(lines)


def run_path(results: list[dict]) -> dict:
    """Where and how the runs trained: device, precision, memory format and (on a CPU) oneDNN's ISA."""
    r = results[0]
    cpu = r.get("provenance", {}).get("cpu_path", {})
    return {"device": r.get("provenance", {}).get("device", "?"), "precision": r.get("precision", "?"),
            "memory_format": "channels_last" if r.get("channels_last") else "NCHW",
            **({"onednn_isa": cpu["onednn_isa"]} if "onednn_isa" in cpu else {})}
