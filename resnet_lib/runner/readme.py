"""The result sections of the README and the docs pages, generated from the files under ``results/``:
``python -m resnet_lib readme``.

Each block sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in one of :data:`DOCUMENTS`
and is rewritten from the files it names; ``--check`` exits 1 (and names the file and blocks) when a document
differs from what the files say, which is what ``tests/test_readme_results.py`` runs. No number in a block is
typed by hand.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from ..base.paper import cifar_table6, targets
from ..base.paths import project_root
from .notebooks import list_notebooks
from .params import read_parameters
from .timings import readme_table

H200 = "results/h200"
FIG6 = {("plain", 20): "plain20", ("plain", 56): "plain56", ("resnet", 20): "resnet20A", ("resnet", 56): "resnet56A"}


def _jsonl(text: str) -> list[dict]:
    """The JSON objects of a log or JSONL file, one per line that starts with ``{``."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


CUDA_CHECKS = {  # what tests/test_cuda_graph.py prints when a check passes, and the check's function
    "the graph step equals the eager step":
        ("graph step == eager step: ok", "test_graph_step_equals_eager_step_across_lr_changes"),
    "`fit` with and without the graph gives the same history":
        ("fit with graph == fit without: ok", "test_fit_with_graph_matches_fit_without"),
    "the fused seeds' graph step equals their eager step":
        ("fused graph step == fused eager step: ok", "test_fused_graph_step_equals_fused_eager_step"),
    "a fused campaign job, graphed, stopped and resumed, matches it trained eagerly":
        ("fused job graphed and resumed == fused job eager: ok",
         "test_fused_job_on_the_gpu_graphed_and_resumed_matches_eager"),
    "runs on their own CUDA streams, a step of each in turn, stopped and resumed, match runs alone":
        ("runs in lanes (streams), stopped and resumed == runs alone: ok",
         "test_runs_in_lanes_on_streams_stopped_and_resumed_match_runs_alone")}


def cuda_check_verdicts(root: Path) -> dict[str, tuple[str, Path | None]]:
    """Each CUDA check's verdict ("passed", "did not pass" or "not run") and the log that says so: the newest
    log (by name, ``cuda_tests_<date>[T<time>].log`` under any ``results/<gpu>/``) that ran the check."""
    logs = sorted(root.glob("results/*/cuda_tests_*.log"), key=lambda f: f.name)
    said = {}
    for name, (ok, func) in CUDA_CHECKS.items():
        said[name] = ("not run", None)
        for log in logs:
            text = log.read_text()
            if ok in text:
                said[name] = ("passed", log)
            elif func in text:  # named in a traceback or a FAILED line
                said[name] = ("did not pass", log)
    return said


def gpu_checks(root: Path) -> str:
    """What the CUDA-graph tests said on the GPUs, read from the committed logs (for each check, the newest
    log that ran it decides)."""
    log = (root / H200 / "full_recipe_resnet20.log").read_text()
    verdicts = cuda_check_verdicts(root)
    if any(where for _, where in verdicts.values()):
        def verdict(v: str, where) -> str:
            if where is None:
                return "not run on a GPU yet"
            log = where.relative_to(root)
            if v == "passed":
                return f"passed (`{log}`)"
            return f"**did not pass** (`{log}`; why: `{log.parent}/provenance.json`)"
        said = "; ".join(f"{name}: {verdict(*verdicts[name])}" for name in CUDA_CHECKS)
        return f"`tests/test_cuda_graph.py` on the GPU: {said}."
    step = "passed" if "graph step == eager step: ok" in log else "did not pass"
    fit_ok = "the CUDA-graph tests FAILED" not in log
    fit = ("passed" if fit_ok else "**failed** in this run (the test built batches of 64 for a batch-128 config, a "
           "bug of the test, fixed afterwards; no log of it passing on a GPU is kept, so it is not claimed here)")
    return (f"In the committed GPU log (`{H200}/full_recipe_resnet20.log`), the check that the graph step equals "
            f"the eager step {step}; the check that `fit` with and without the graph gives the same history {fit}.")


def gpu_speed(root: Path) -> str:
    """ms per iteration and images/s of the naive reference, the eager step and the graph step."""
    rows = [r for f in ("bench_graph.jsonl", "bench_eager.jsonl") for r in _jsonl((root / H200 / f).read_text())]
    naive = next(r for r in rows if r.get("impl") == "naive_reference")
    graph = next(r for r in rows if r.get("impl") == "resnet_lib" and r["cuda_graph"])
    eager = next(r for r in rows if r.get("impl") == "resnet_lib" and not r["cuda_graph"])
    lines = ["| | ms per iteration (batch 128) | images/s |", "|---|---|---|"]
    for name, r in (("naive reference (PIL, DataLoader, fp32)", naive), ("resnet_lib, eager step", eager),
                    ("resnet_lib, CUDA graph (default)", graph)):
        lines.append(f"| {name} | {r['ms_per_iter']:.2f} | {r['img_per_s']:,.0f} |")
    return "\n".join(lines)


def full_recipe_run(root: Path | None = None) -> dict:
    """The H200 full-recipe ResNet-20 run: the summary line at the end of its log (``final``, ``wall_s``, ...)."""
    log = ((root or project_root()) / H200 / "full_recipe_resnet20.log").read_text()
    return [r for r in _jsonl(log) if "iters" in r][-1]


def fig6_runs(root: Path | None = None) -> dict:
    """The H200 quarter-schedule runs of Fig. 6's four nets, ``{("plain" | "resnet", depth): result}``."""
    res = {}
    for key, stem in FIG6.items():
        [path] = sorted(((root or project_root()) / H200).glob(f"{stem}_it*.json"))
        res[key] = json.loads(path.read_text())
    return res


def gpu_full_recipe(root: Path) -> str:
    """ResNet-20 with Section 4.2's full recipe, beside Table 6."""
    run = full_recipe_run(root)
    return "\n".join([
        "| ResNet-20, full recipe | test error | wall time |", "|---|---|---|",
        f"| paper, Table 6 | {cifar_table6()[20]:.2f}% | |",
        f"| this library, {run['device'].replace('NVIDIA ', '')} ({run['iters']:,} iterations) | "
        f"**{100 * run['final']['test_err']:.2f}%** (train {_pct(run['final']['train_err'])}) | {run['wall_s']:.1f} s |"])


def gpu_fig6(root: Path) -> str:
    """Fig. 6's four nets at a quarter of the schedule: final training / test error, and the degradation."""
    res = fig6_runs(root)
    iters = res["plain", 20]["config"]["iters"]
    cell = lambda r: f"{_pct(r['final']['train_err'])} / {_pct(r['final']['test_err'])}"
    ratio = res["plain", 56]["final"]["train_err"] / res["plain", 20]["final"]["train_err"]
    r56, r20 = res["resnet", 56]["final"]["train_err"], res["resnet", 20]["final"]["train_err"]
    return "\n".join([
        f"Final training / test error after {iters:,} iterations (lr drops at "
        f"{' and '.join(f'{m:,}' for m in res['plain', 20]['config']['milestones'])}):", "",
        "| | 20 layers | 56 layers |", "|---|---|---|",
        f"| plain | {cell(res['plain', 20])} | {cell(res['plain', 56])} |",
        f"| ResNet | {cell(res['resnet', 20])} | {cell(res['resnet', 56])} |", "",
        f"The 56-layer plain net ends with {ratio:.1f} times the 20-layer one's training error; the 56-layer "
        f"ResNet's training error is {'below' if r56 < r20 else 'above'} the 20-layer one's "
        f"({_pct(r56)} against {_pct(r20)})."])


def paper_scale_table6(root: Path) -> str:
    """Table 6 from the campaign's shipped runs (``results/cifar10``): mean ± std over seeds with n, beside
    the paper, and what is still missing."""
    from ..experiments.grad_precision import precision_section
    from ..experiments.shipped import coverage_text, depth_trend_text, gap_text, paper_scale_runs, table6_rows
    runs, note = paper_scale_runs(root / "results" / "cifar10")
    rows = table6_rows(runs)
    if not rows:
        return "No paper-scale run is shipped yet."
    lines = [note, "", f"| net | n | test error % (this project, {runs[0]['precision']}) | paper % | gap (points) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['net']} | {r['n']} | {r['test error % (ours)']} | {r['paper %']} | {r['gap (points)']} |"
              for r in rows]
    lines += ["", gap_text(runs), "", depth_trend_text(runs), "", coverage_text(runs)]
    prec = precision_section(root / "results" / "cifar10")
    lines += ["", prec] if prec else []
    return "\n".join(lines)


def gpu_campaign_bench(root: Path) -> str:
    """K ResNet-20 seeds fused into one wide net against the one-net graphed engine and the naive reference, and
    nets trained at once in lanes: one section per GPU run (``results/bench/*_gpu_campaign.jsonl``)."""
    parts = [_campaign_bench_run(f) for f in sorted((root / "results" / "bench").glob("*_gpu_campaign.jsonl"))]
    return "\n\n".join(parts)


def _campaign_bench_run(path: Path) -> str:
    rows = _jsonl(path.read_text())
    ratio = next(r for r in rows if "engine_vs_naive" in r)
    eng = next(r for r in rows if r.get("impl") == "resnet_lib")
    naive = next(r for r in rows if r.get("impl") == "naive_reference")
    fused = [r for r in rows if str(r.get("impl", "")).startswith("fused")]
    prov = json.loads(path.with_name(path.name.replace(".jsonl", ".provenance.json")).read_text())
    lines = [f"ResNet-{ratio['depth']}, batch 128 per net, {ratio['iters']} timed iterations each, one run on an "
             f"{prov['device'].split(',')[0]}, code {prov['commit']} (`results/bench/{path.name}`):", "",
             "| | nets | ms per iteration | images/s | vs one-net engine | vs naive | time vs one net |",
             "|---|---|---|---|---|---|---|",
             f"| naive reference | 1 | {naive['ms_per_iter']:.2f} | {naive['img_per_s']:,.0f} | | 1.00x | |",
             f"| engine (CUDA graph) | 1 | {eng['ms_per_iter']:.2f} | {eng['img_per_s']:,.0f} | 1.00x | "
             f"{ratio['engine_vs_naive']:.2f}x | 1.00x |"]
    for r in fused:
        k = r["k"]
        lines.append(f"| fused seeds | {k} | {r['ms_per_iter']:.2f} | {r['img_per_s']:,.0f} | "
                     f"{ratio[f'fused{k}_vs_engine']:.2f}x | {ratio[f'fused{k}_vs_naive']:.2f}x | "
                     f"{ratio[f'fused{k}_time_vs_one_net']:.2f}x |")
    for lanes in (r for r in rows if r.get("impl") == "lanes"):  # nets of different depths at once (streams)
        lines += ["", "Nets trained at once in the same run, each on its own CUDA stream, a step of each in turn "
                  "(`engine.lanes`, as the campaign trains them), against the same nets one after another:", "",
                  "| nets | ms per round | ms one after another | speed-up |", "|---|---|---|---|"]
        lines += [f"| {' + '.join(f'ResNet-{d}' for d in g['depths'])} | {g['ms_per_round']:.2f} | "
                  f"{g['ms_one_after_another']:.2f} | {g['speedup']:.2f}x |" for g in lanes["groups"]]
    return "\n".join(lines)


def cpu_bench(root: Path) -> str:
    """The CPU bench on both paths: images/s against the naive yardstick, and the fp32 compute ceiling."""
    lines = ["| path | naive yardstick | resnet_lib, paper-length runs | ratio | short runs (eager) | ratio | "
             "fp32 ceiling: any implementation | its ratio |", "|---|---|---|---|---|---|---|---|"]
    recs = [json.loads((root / "results" / "bench" / f).read_text())
            for f in ("cpu_bf16_path.json", "cpu_avx2_fp32_path.json")]
    for r in recs:
        p, c, short = r["path"], r["compute"], r["short_runs"]
        isa = "AVX2 (stand-in, `ONEDNN_MAX_CPU_ISA=AVX2`)" if r["environment"].get("ONEDNN_MAX_CPU_ISA") else p["onednn_isa"]
        lines.append(f"| {isa}: {p['precision']}, {p['memory_format']} | {r['naive_img_per_s']:,.0f} img/s | "
                     f"{r['resnet_lib_img_per_s']:,.0f} img/s{' (compiled)' if r['compiled'] else ''} | "
                     f"**{r['ratio_img_per_s']:.2f}x** | {short['resnet_lib_img_per_s']:,.0f} img/s | "
                     f"{short['ratio_img_per_s']:.2f}x | {c['fp32_ceiling_img_per_s']:,.0f} img/s | "
                     f"{c['fp32_ratio_ceiling']:.2f}x |")
    avx2 = recs[1]["compute"]
    lines += ["", f"ResNet-20 costs {avx2['flops_per_img'] / 1e6:.0f} MFLOP per training image. On the fp32 path the "
              f"yardstick reaches {avx2['naive_gflops']:.0f} GFLOP/s and resnet_lib {avx2['resnet_lib_gflops']:.0f}, "
              f"against {avx2['fp32_matmul_gflops']:.0f} GFLOP/s for a large fp32 matrix product on the same cores: "
              f"no fp32 implementation can beat the yardstick by more than {avx2['fp32_ratio_ceiling']:.2f}x there. "
              f"Load average during the runs: {recs[0]['load_avg_1min']:.1f} and {recs[1]['load_avg_1min']:.1f}."]
    return "\n".join(lines)


def main_job_times(root: Path) -> str:
    """The notebooks' times on each kind of CPU (``runner.timings``), while their defaults (this project's
    notebooks, whatever ``root`` holds the results) are unchanged."""
    return readme_table(root, {nb.stem: read_parameters(nb) for nb in list_notebooks()})


def notebook_defaults(root: Path) -> str:
    """Each notebook's defaults, read from its ``parameters`` cell (this project's notebooks), so that the docs
    that describe a notebook's default size are checked against the notebooks."""
    lines = ["| notebook | defaults (its `parameters` cell) |", "|---|---|"]
    for nb in list_notebooks():
        shown = ", ".join(f"`{k}={v!r}`" for k, v in read_parameters(nb).items() if k != "OUT_DIR")
        lines.append(f"| {nb.stem} | {shown.replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


def scorecard(root: Path) -> str:
    """The paper's claims, each with its status computed from ``results/`` (``experiments.scorecard``); the
    reader's own outputs join it in the book, not here, so that the README is the same on every machine."""
    from ..experiments import scorecard as sc
    return sc.markdown(sc.scorecard(root))


def cifar10_provenance(root: Path) -> str:
    """What trained where, when, in which precision and with which code (``experiments.shipped_provenance``)."""
    from ..experiments.shipped_provenance import provenance_section
    return provenance_section(root)


def precision_and_depth(root: Path) -> str:
    """The precision study's finding, rule, default and costs (``campaign.precision_study.section``)."""
    from ..campaign.precision_study import section
    return section(root / "results" / "precision")


def precision_decision(root: Path) -> str:
    """The precision study's decision alone (the README's front door; docs/precision.md has the rest)."""
    from ..campaign.precision_study import all_records, decision_text, load_costs
    records = all_records(root / "results" / "precision")
    if not records:
        return "No run of the precision study is committed yet."
    return decision_text(records, costs=load_costs(root / "results" / "precision"))


DOCUMENTS = ("README.md", "docs/speed.md", "docs/gpu.md", "docs/notebooks.md", "docs/precision.md",
             "results/cifar10/README.md")
BLOCKS = {"scorecard": scorecard, "cifar10_provenance": cifar10_provenance, "notebook_defaults": notebook_defaults,
          "gpu_checks": gpu_checks, "gpu_speed": gpu_speed, "gpu_full_recipe": gpu_full_recipe, "gpu_fig6": gpu_fig6,
          "paper_scale_table6": paper_scale_table6, "gpu_campaign_bench": gpu_campaign_bench,
          "main_job_times": main_job_times, "cpu_bench": cpu_bench, "precision_and_depth": precision_and_depth,
          "precision_decision": precision_decision}
PATTERN = re.compile(r"(<!-- results:(\w+) -->\n)(.*?)(<!-- /results:\2 -->)", re.S)


def render(text: str, root: Path) -> str:
    """``text`` with every results block rewritten from the files; an unknown block name is an error."""
    def sub(m):
        name = m.group(2)
        if name not in BLOCKS:
            raise ValueError(f"README block {name!r} has no renderer; known: {sorted(BLOCKS)}")
        return m.group(1) + BLOCKS[name](root).rstrip() + "\n" + m.group(4)
    return PATTERN.sub(sub, text)


def stale_blocks(text: str, root: Path) -> list[str]:
    """Names of the blocks whose text differs from what the files say."""
    new = {m.group(2): m.group(3) for m in PATTERN.finditer(render(text, root))}
    return [m.group(2) for m in PATTERN.finditer(text) if m.group(3) != new[m.group(2)]]


def stale_documents(root: Path) -> dict[str, list[str]]:
    """``{document: [stale block names]}`` over :data:`DOCUMENTS` (only those with a stale block)."""
    out = {}
    for name in DOCUMENTS:
        path = root / name
        stale = stale_blocks(path.read_text(), root) if path.exists() else []
        if stale:
            out[name] = stale
    return out


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m resnet_lib readme",
                                 description="Rewrite the result blocks of the README and docs/ from results/.")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is out of date")
    ap.add_argument("--root", default=None, help="the checkout (default: this project's root)")
    a = ap.parse_args(argv)
    root = Path(a.root) if a.root else project_root()
    docs = [root / name for name in DOCUMENTS if (root / name).exists()]
    count = sum(len(PATTERN.findall(d.read_text())) for d in docs)
    if a.check:
        stale = stale_documents(root)
        if stale:
            print(f"blocks out of date with results/: {stale}; run `python -m resnet_lib readme`")
            return 1
        print(f"{len(docs)} documents: {count} result blocks match results/")
        return 0
    for d in docs:
        d.write_text(render(d.read_text(), root))
    print(f"{len(docs)} documents: {count} result blocks rewritten from results/")
    return 0


def resnet20_two_runs(campaign_runs: list[dict], root: Path | None = None) -> str:
    """Why ResNet-20's full-recipe test error reads differently in two places: the H200 log's single run
    (``full_recipe_run``) and the Table 6 campaign's run(s) (``campaign_runs``, shipped records) are different
    runs, and their gap is set beside the paper's own spread over seeds."""
    log = full_recipe_run(root)
    ours = [r for r in campaign_runs if r["name"] == "ResNet-20" and r["config"]["iters"] == log["iters"]]
    if not ours:
        return ""
    ref = targets()["cifar10_table6_test_error_pct"]["ResNet-110"]
    def _ended(r: dict) -> str:
        return f"{100 * r['final']['test_err']:.2f}% ({r['gpu'].replace('NVIDIA ', '')}, {r['precision']})"
    if len(ours) == 1:
        camp = (f"the Table 6 campaign's seed-{ours[0]['seed']} run, which notebook 03's Table 6 shows, ended at "
                f"{_ended(ours[0])}")
    else:
        camp = ("the Table 6 campaign's runs, which notebook 03's Table 6 shows, ended at "
                + ", ".join(f"{_ended(r)} (seed {r['seed']})" for r in ours))
    which = "" if len(ours) == 1 else f" (the log's run against the seed-{ours[0]['seed']} one)"
    gap = abs(100 * log["final"]["test_err"] - 100 * ours[0]["final"]["test_err"])
    pair = ref["std"] * 2 ** 0.5  # the std of the difference of two single runs, at the paper's seed spread
    return (f"ResNet-20 with the full recipe ({log['iters']:,} iterations) has two records. The first run of the "
            f"recipe, on an {log['device']} (`results/h200/full_recipe_resnet20.log`, whose summary does not record "
            f"its seed), ended at **{100 * log['final']['test_err']:.2f}%** test error; {camp}. They are separate "
            f"runs (another initialisation and data order) and differ by {gap:.2f} points{which}. At the paper's "
            f"own spread over seeds (ResNet-110: std "
            f"{ref['std']} points over {ref['runs']} runs) two single runs differ with a std of {pair:.2f} points, so "
            f"this gap is {gap / pair:.1f} times that: "
            + ("within twice it, what seed noise alone gives." if gap <= 2 * pair else
               "beyond twice it, more than seed noise alone would usually give (the two runs also differ in code "
               "version and machine)."))
