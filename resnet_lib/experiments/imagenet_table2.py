"""Table 2 and Fig. 4 at this project's scale: plain-18/34 and ResNet-18/34 trained alike on Tiny ImageNet.

The runs are made by ``python -m resnet_lib train-imagenet`` (``results/imagenet_tiny/run.sh`` gives the exact
commands) and shipped in ``results/imagenet_tiny/<net>_s<seed>/`` as the command wrote them: ``result.json``
(the curve, the final errors, the provenance) and ``tests.json`` (centre, 10-crop and multi-scale errors on the
validation images). This module reads them, sets them beside Table 2, draws them in Fig. 4's layout and passes
each of the paper's claims through ``evidence.compare`` with the spread over seeds.

Table 2 reports the 10-crop top-1 validation error; Fig. 4 draws the training error (thin) and the
centre-crop validation error (bold) against the iteration. Here the bold curve is the error on the held-out
*training* images that steered the plateau rule (the validation images never steer these runs).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..base.paper import targets
from ..base.paths import project_root
from .evidence import Verdict, compare, mean_std

NETS = ("plain-18", "plain-34", "ResNet-18", "ResNet-34")
# (better, worse, what the paper says): Table 2 and Sec. 4.1
CLAIMS = (("plain-18", "plain-34", "the deeper plain net has the higher error (degradation, Table 2 / Fig. 4 left)"),
          ("ResNet-34", "ResNet-18", "the deeper ResNet has the lower error (Table 2 / Fig. 4 right)"),
          ("ResNet-34", "plain-34", "at 34 layers the ResNet beats the plain net (Table 2)"))


def shipped_dir() -> Path:
    return project_root() / "results" / "imagenet_tiny"


def load_runs(folder=None) -> list[dict]:
    """One dict per finished run in ``folder`` (default: the shipped ``results/imagenet_tiny``): ``net``,
    ``seed``, ``history``, ``final`` (fractions), ``tests`` (``%``) and ``provenance``. A folder without a
    ``result.json`` (a run that did not finish) is left out; none at all is an error that says so."""
    folder = Path(folder) if folder else shipped_dir()
    runs = []
    for res_path in sorted(folder.glob("*/result.json")):
        res = json.loads(res_path.read_text())
        spec = res["spec"]
        tests_path, summary_path = res_path.with_name("tests.json"), res_path.with_name("summary.json")
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        runs.append({"net": f"{'ResNet' if spec['residual'] else 'plain'}-{spec['depth']}",
                     "seed": res["config"]["seed"], "history": res["history"], "final": res["final"],
                     "tests": json.loads(tests_path.read_text()) if tests_path.is_file() else None,
                     "lr_drops": summary.get("lr_drops", []), "images": summary.get("images", {}),
                     "provenance": res.get("provenance", {}), "wall_s": res.get("wall_s"),
                     "iters": res["config"]["iters"], "num_classes": spec["num_classes"]})
    if not runs:
        raise FileNotFoundError(f"no finished run (a result.json) under {folder}; make them with "
                                "results/imagenet_tiny/run.sh or pass the folder that holds them")
    return runs


def errors_by_net(runs: list[dict], metric: str = "10crop") -> dict[str, list[float]]:
    """Per net, one error in % per seed: ``"10crop"``, ``"center"``, ``"multiscale"`` (top-1 on the validation
    images), ``"train"`` (the last training error of the curve) or ``"holdout"`` (its last held-out error)."""
    out: dict[str, list[float]] = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        if metric == "train":
            v = 100 * r["history"]["train_err"][-1]
        elif metric == "holdout":
            v = 100 * r["history"]["test_err"][-1]
        else:
            if r["tests"] is None:
                continue
            v = r["tests"][metric]["top1"]
        out.setdefault(r["net"], []).append(v)
    return out


def table2_rows(runs: list[dict]) -> list[dict]:
    """Our four nets beside Table 2: 10-crop top-1 validation error, mean ± std over seeds, and the last
    training error of the curve."""
    paper = targets()["imagenet_table2_top1_10crop"]
    ten, train = errors_by_net(runs, "10crop"), errors_by_net(runs, "train")
    rows = []
    for net in NETS:
        if net not in ten:
            continue
        (m, s), (mt, st) = mean_std(ten[net]), mean_std(train.get(net, [float("nan")]))
        rows.append({"net": net, "seeds": len(ten[net]), "10-crop top-1 err (%)": round(m, 2),
                     "± std over seeds": None if s is None else round(s, 2),
                     "final training err (%)": round(mt, 2), "± std ": None if st is None else round(st, 2),
                     "paper: 10-crop top-1 err (%)": paper[net]})
    return rows


def claims(runs: list[dict], metric: str = "10crop") -> list[tuple[str, Verdict]]:
    """Each claim of :data:`CLAIMS` decided by ``evidence.compare`` on ``metric``'s errors over seeds."""
    errs = errors_by_net(runs, metric)
    chance = 100 * (1 - 1 / runs[0]["num_classes"])
    return [(what, compare(better, errs.get(better, []), worse, errs.get(worse, []), chance=chance))
            for better, worse, what in CLAIMS]


def plot_fig4(runs: list[dict], axes) -> None:
    """Fig. 4's layout on two axes: plain-18/34 on the left, ResNet-18/34 on the right; thin dashed: training
    error, bold: held-out error; one line per seed; dotted grey: chance."""
    colours = {"18": "tab:red", "34": "tab:blue"}
    for ax, kind in zip(axes, ("plain", "ResNet")):
        for r in sorted(runs, key=lambda r: (r["net"], r["seed"])):
            if not r["net"].startswith(kind):
                continue
            h, c = r["history"], colours[r["net"][-2:]]
            label = f"{r['net']}" if r["seed"] == min(x["seed"] for x in runs) else None
            ax.plot(h["iteration"], [100 * e for e in h["train_err"]], "--", color=c, lw=0.8)
            ax.plot(h["iteration"], [100 * e for e in h["test_err"]], "-", color=c, lw=2, label=label)
        ax.axhline(100 * (1 - 1 / runs[0]["num_classes"]), color="grey", lw=0.8, ls=":", label="chance")
        ax.set_title(f"{kind}-18 / {kind}-34")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    axes[0].set_ylabel("top-1 error (%)\nbold: held-out, dashed: training")


def provenance_text(runs: list[dict]) -> str:
    """Where the shipped runs come from: code revision, device, dates, training time, all read from them."""
    prov = [r["provenance"] for r in runs]
    gits = sorted({str(p.get("git")) for p in prov})
    devices = sorted({str(p.get("device")) for p in prov})
    times = sorted(str(p.get("time_utc")) for p in prov)
    walls = [r["wall_s"] for r in runs if r["wall_s"] is not None]
    seeds = sorted({r["seed"] for r in runs})
    return (f"{len(runs)} runs ({', '.join(sorted({r['net'] for r in runs}))}; seeds {seeds}), "
            f"{runs[0]['iters']} iterations each on {runs[0]['num_classes']} classes; code {', '.join(gits)}; "
            f"device {', '.join(devices)}; finished {times[0]} to {times[-1]}; "
            f"{sum(walls) / 60:.0f} minutes of training in all.")


def verdict_markdown(runs: list[dict]) -> str:
    """One bullet per claim and metric (10-crop validation error as in Table 2; last training error as in
    Fig. 4), each sentence from ``evidence.compare``; the degradation claim says plainly when it fails."""
    lines = []
    for metric, label in (("10crop", "10-crop top-1 validation error (Table 2)"),
                          ("train", "final training error (Fig. 4's thin curves)")):
        for what, v in claims(runs, metric):
            extra = ""
            if what.startswith("the deeper plain net") and not v.shown and v.gap is not None:
                extra = " **At this scale plain-34 does not train measurably worse than plain-18.**"
            lines.append(f"- *{what}*, on the {label}: {v.text}{extra}")
    return "\n".join(lines)
