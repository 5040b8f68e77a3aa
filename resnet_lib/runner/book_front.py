"""The book's first page: the paper's figures from this project's own runs, each beside the paper's numbers.

Fig. 6 (training curves of plain and residual nets) and Fig. 7 (layer responses) are drawn from the shipped
paper-scale runs (``results/cifar10``, and the H200's quarter-schedule runs in ``results/h200``); Table 6 and
the scorecard come from ``experiments.scorecard``, which also reads the reader's own outputs. Every figure and
table says its scale (the paper's recipe, a quarter of it, or the reader's run), so toy-scale and paper-scale
numbers never share a table unlabelled. Images are inline PNGs: the page loads nothing.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from ..base.paper import targets
from ..experiments import scorecard as sc
from ..experiments.scorecard_sources import quarter_runs, read_json, shipped_cifar

STATUS_COLOURS = {sc.REPRODUCED: "#d7f0d7", sc.PARTLY: "#fff2c2", sc.NOT_REPRODUCED: "#f8d3d3",
                  sc.NOT_YET: "#e8e8e8", sc.BEYOND: "#e3e9f5"}
CSS = """
.book figure { margin: 1rem 0; } .book figcaption { font-size: 14px; color: #333; }
.book figure img { max-width: 100%; border: 1px solid #d8dde5; }
.book td.status { white-space: nowrap; font-weight: 600; }
""" + "".join(f'.book td.status[data-status="{s}"] {{ background: {c}; }}\n' for s, c in STATUS_COLOURS.items())


def _png(fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _curves(ax, runs: list[dict], residual: bool, paper: dict[int, float]) -> None:
    import matplotlib.pyplot as plt
    mine = sorted((r for r in runs if bool(r["spec"]["residual"]) == residual), key=lambda r: r["spec"]["depth"])
    colours = plt.cm.viridis_r([0.15 + 0.7 * i / max(1, len(mine) - 1) for i in range(len(mine))])
    for r, c in zip(mine, colours):
        h = r["history"]
        ax.plot(h["iteration"], [100 * e for e in h["train_err"]], "--", color=c, lw=1)
        ax.plot(h["iteration"], [100 * e for e in h["test_err"]], "-", color=c, lw=2, label=r["name"])
        if residual and r["spec"]["depth"] in paper:  # Table 6's test error, where the curve ends
            ax.plot([h["iteration"][-1]], [paper[r["spec"]["depth"]]], "*", color=c, ms=11, mec="k")
    ax.grid(alpha=0.3)
    if mine:
        ax.legend(fontsize=8, title="bold: test, dashed: train" + (", ★ paper" if residual else ""), title_fontsize=8)


def fig6(root: Path) -> str | None:
    """Fig. 6 from the shipped runs, one row per scale (the paper's recipe; a quarter of it), plain nets left,
    ResNets right; the paper's Table 6 test errors as stars. None when no run is shipped."""
    import matplotlib.pyplot as plt
    full = [r for r, _ in shipped_cifar(root) if r["config"].get("iters") == sc.FULL_ITERS]
    policy = "fp32, Table 6's policy"
    if not full:  # Table 6's own not trained yet: the precision study's bf16 runs, said to be so
        full, policy = [r for r, _ in shipped_cifar(root, "bf16") if r["config"].get("iters") == sc.FULL_ITERS], \
            "bf16 autocast: the precision study's, not Table 6's"
    rows = [(f"paper's recipe, 64k iterations (shipped, one seed each; {policy})", full),
            ("a quarter of the recipe, 16k iterations (shipped, H200)", [r for r, _ in quarter_runs(root)])]
    rows = [(t, [r for r in runs if "history" in r]) for t, runs in rows]
    rows = [(t, runs) for t, runs in rows if runs]
    if not rows:
        return None
    t6 = {d: v for d, v in ((int(k.split("-")[1]), v) for k, v in targets()["cifar10_table6_test_error_pct"].items()
                            if k.startswith("ResNet-"))}
    paper = {d: (v["mean"] if isinstance(v, dict) else v) for d, v in t6.items()}
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.6 * len(rows)), sharey="row", squeeze=False)
    for (title, runs), (left, right) in zip(rows, axes):
        _curves(left, runs, False, paper)
        _curves(right, runs, True, paper)
        top = max(100 * max(r["final"]["train_err"], r["final"]["test_err"]) for r in runs)
        left.set_ylim(0, max(20.0, 1.25 * top))  # the whole story: a degraded plain net ends far above 20 %
        left.set_title(f"plain nets: {title}", fontsize=10)
        right.set_title(f"ResNets: {title}", fontsize=10)
        left.set_ylabel("error (%)")
    for ax in axes[-1]:
        ax.set_xlabel("iteration")
    fig.tight_layout()
    return _png(fig)


def fig7(root: Path) -> str | None:
    """Fig. 7 from the shipped fully trained nets' responses: per layer in order (top) and sorted (bottom)."""
    import matplotlib.pyplot as plt
    data = read_json(root / "results" / "cifar10" / "responses.json")
    nets = {n: v["stds"] for n, v in (data or {}).get("nets", {}).items() if isinstance(v, dict) and v.get("stds")}
    if not nets:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5))
    for name, stds in sorted(nets.items(), key=lambda kv: (int(kv[0].split("-")[1]), kv[0])):
        style = dict(ls="-" if name.startswith("ResNet") else "--", label=name)
        top.plot(range(1, len(stds) + 1), stds, **style)
        bottom.plot(range(1, len(stds) + 1), sorted(stds, reverse=True), **style)
    top.set_xlabel("layer index (original order)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    for ax in (top, bottom):
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
    top.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    return _png(fig)


def _figure(src: str | None, caption: str, missing: str) -> str:
    if src is None:
        return f'<p class="missing">{html.escape(missing)}</p>'
    return f'<figure><img src="{src}" alt="{html.escape(caption)}"><figcaption>{caption}</figcaption></figure>'


def claims_table(claims: list[sc.Claim], section_href, file_href) -> str:
    """The claims as an HTML table: claim, the paper's numbers, status, what ours say, notebook section and files."""
    rows = []
    for c in claims:
        also = "".join(f"<br><small>Also {html.escape(e.scale)}: {e.status}.</small>" for e in c.evidence[1:])
        needs = (f"<br><small>At the paper's scale: needs {html.escape(c.needs)}.</small>"
                 if c.needs and c.status != sc.BEYOND else "")
        files = list(dict.fromkeys(c.files))
        links = " ".join(f'<a href="{html.escape(file_href(f))}">[{i}]</a>' for i, f in enumerate(files, 1))
        where = f'<a href="{html.escape(section_href(*c.section))}">{c.section[0][:2]} · {html.escape(c.section[1])}</a>'
        rows.append(f"<tr><td>{html.escape(c.claim)}</td><td>{html.escape(c.paper)}</td>"
                    f'<td class="status" data-status="{c.status}">{c.status}</td>'
                    f"<td>{html.escape(c.said)}{also}{needs}</td><td>{where}{'<br>files: ' + links if links else ''}</td></tr>")
    head = "<tr><th>claim</th><th>paper</th><th>status</th><th>what the numbers say</th><th>where</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def front(root: Path, outputs: Path | None, section_href, file_href) -> str:
    """The first page's figures and tables, as HTML: Fig. 6, Fig. 7, Table 6, then the whole scorecard."""
    claims = sc.scorecard(root, outputs)
    by_key = {c.key: c for c in claims}
    table6 = [by_key[k] for k in by_key if k.startswith("table6_")]
    fig7_claims = [by_key["responses_vs_plain"], by_key["responses_depth"]]
    tally = ", ".join(f"{n} {s}" for s, n in sc.counts(claims).items())
    return f"""
<h2 id="fig6">Fig. 6: plain against residual nets on CIFAR-10</h2>
{_figure(fig6(root), "Training (dashed) and test (bold) error of this project's shipped runs, plain nets left and "
         "ResNets right, one row per scale; stars: the paper's Table 6 test error for each ResNet.",
         "No paper-scale CIFAR-10 run is shipped in results/ yet.")}
{claims_table([by_key["degradation_cifar"], by_key["deeper_resnets_cifar"]], section_href, file_href)}
<h2 id="fig7">Fig. 7: layer responses</h2>
{_figure(fig7(root), "Std of each 3x3 layer's BN output of this project's fully trained nets (paper's recipe, "
         "shipped; solid: ResNets, dashed: plain). The paper prints no numbers for Fig. 7, only the two claims below.",
         "No layer responses are shipped in results/cifar10 yet.")}
{claims_table(fig7_claims, section_href, file_href)}
<h2 id="table6">Table 6: CIFAR-10 test error by depth (paper's recipe, shipped runs)</h2>
{claims_table(table6, section_href, file_href)}
<h2 id="scorecard">The scorecard: every claim</h2>
<p>Each claim's status is computed from <code>results/</code> and this run's own outputs by
<code>resnet_lib.experiments.scorecard</code>, through one rule (<code>experiments.evidence.compare</code>): no
net near chance or diverged, two seeds or more (or the test set's sampling, for one model tested two ways), a gap
beyond twice its standard error. The first source named decides (the largest scale with both sides); each says its
scale. {len(claims)} claims: {tally}.</p>
{claims_table(claims, section_href, file_href)}
"""
