"""The executed notebooks as a static book, to read before (or without) running anything.

``build(out)`` turns ``<out>/executed/*.ipynb`` into ``<out>/book/``: one page per notebook with its
figures inline (nbconvert's HTML export, lab template), and ``index.html``, which opens with the paper's
figures from this project's own runs (Fig. 6, Fig. 7, Table 6 and the scorecard, ``runner.book_front``),
then follows the paper section by section and links each claim, table and figure to the heading of the
notebook that reproduces it, then shows ``<out>/summary.md`` (this run's numbers) and what ``results/``
holds. The pages load nothing from the network: no require.js, MathJax or widget scripts (TeX shows as
written). An ipywidgets output becomes what it showed when the run ended (text, progress, the figures its
Output widget captured) and a note that the controls work in JupyterLab.

``python -m resnet_lib book --out DIR``; the main job (``run-notebooks``) ends with it.
"""
from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
from pathlib import Path

from ..base.paths import output_dir, project_root
from . import book_front

# The paper in its own order: (part, [(paper item, what the notebook shows, notebook, words of its heading)]).
PAPER = [
    ("Sections 1-3: residual learning", [
        ("Sec. 1, Fig. 1", "The degradation problem: deeper plain stacks train worse", "01", "The degradation problem"),
        ("Sec. 2", "Shortcut connections: highway networks' gated shortcut", "01", "Highway networks"),
        ("Sec. 2", "Residual representations: residual vectors in a two-grid solver", "01", "Residual vectors"),
        ("Sec. 3.1", "Residual learning: a zero branch is the identity", "01", "The identity argument"),
        ("Sec. 3.2, Eq. 1", "Identity shortcuts: signal and gradient flow at initialisation", "01",
         "Signal and gradient flow"),
        ("Sec. 3.3, Fig. 2, Fig. 5", "The basic and the bottleneck block", "02", "The two blocks"),
        ("Sec. 3.3, Fig. 3", "A 34-layer network with and without shortcuts", "02", "A whole network"),
        ("Table 1", "The architectures stage by stage, read from the built modules", "02", "Table 1, rebuilt"),
        ("Table 1, FLOPs", "FLOPs counted by PyTorch beside the paper's", "02", "FLOPs beside the paper"),
        ("Sec. 3.3, Table 3", "Shortcut options A, B, C", "02", "Shortcut options"),
    ]),
    ("Sections 3.4 and 4.1: ImageNet", [
        ("Sec. 3.4", "Scale augmentation, crops, flips and PCA colour", "05", "A full-resolution photograph"),
        ("Sec. 3.4, Tables 3-4", "10-crop and fully-convolutional multi-scale testing", "05", "Testing: 10 crops"),
        ("Sec. 4.1, Tables 2-4", "One model tested three ways, beside the paper", "05", "Beside the paper"),
    ]),
    ("Section 4.2: CIFAR-10", [
        ("Sec. 4.2, Fig. 6", "Training curves of plain and residual nets", "03", "Fig. 6 at a quarter of the paper"),
        ("Table 6", "Test error beside Table 6", "03", "Beside Table 6"),
        ("Table 6, parameters", "The CIFAR-10 nets' sizes beside Table 6", "02", "The CIFAR-10 nets"),
        ("Fig. 7", "Standard deviations of layer responses", "04", "Fig. 7 from the fully trained nets"),
        ("Sec. 4.2, Fig. 7 text", "The paper's claims about layer responses, checked", "04",
         "The paper's two claims, on these nets"),
    ]),
    ("Appendix", [
        ("Appendix A, Tables 7-8", "Faster R-CNN mAP on a residual and a plain backbone", "07", "mAP beside Tables 7"),
        ("Appendix C, Tables 13-14", "Localization error with a per-class RPN", "06", "the localization error"),
    ]),
]
PAPER_URL = "https://arxiv.org/abs/1512.03385"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

CSS = """
body.book { font: 16px/1.5 system-ui, sans-serif; max-width: 64rem; margin: 2rem auto; padding: 0 1rem; }
nav.book-nav { font: 14px/1.6 system-ui, sans-serif; padding: .5rem 1rem; background: #f3f5f8;
               border-bottom: 1px solid #d8dde5; }
nav.book-nav a { margin-right: 1.5rem; }
.book table { border-collapse: collapse; margin: 1rem 0; font-size: 14px; }
.book th, .book td { border: 1px solid #d8dde5; padding: .25rem .6rem; text-align: left; vertical-align: top; }
.book th { background: #f3f5f8; }
.book .missing { color: #a33; }
.widget-note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .4rem .8rem; margin: .3rem 0;
               font-size: 14px; }
.widget-static progress { vertical-align: middle; margin: 0 .5rem; }
"""

# nbconvert's lab template without the scripts it would fetch (require.js, MathJax, mermaid, widgets).
TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block html_head_js %}{% endblock html_head_js %}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block html_head_js_mathjax %}{% endblock html_head_js_mathjax %}
{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}
{% block extra_css %}<style>{{ resources.book_css }}</style>{% endblock extra_css %}
{% block body_header %}{{ super() }}{{ resources.book_nav }}{% endblock body_header %}
{% block body_footer %}{{ resources.book_nav }}{{ super() }}{% endblock body_footer %}
"""


def _label(state: dict) -> str:
    """A control's value as shown: selection widgets keep an index into their labels, not the value."""
    labels, index = state.get("_options_labels"), state.get("index")
    if labels is not None and isinstance(index, int):
        return str(labels[index])
    if labels is not None and isinstance(index, list):
        return ", ".join(str(labels[i]) for i in index)
    return str(state.get("value"))


def _widget_outputs(model_id: str, models: dict) -> list[dict]:
    """What a widget showed when the run ended, as plain notebook outputs: its text, progress bars and
    control values as one HTML block (with a note if it has controls), its Output widgets' captures after."""
    parts, controls, captured = [], [], []

    def walk(mid: str) -> None:
        model = models.get(mid)
        if model is None:
            return
        name, s = model["model_name"], model["state"]
        if name == "OutputModel":
            captured.extend(s.get("outputs", []))
        elif "children" in s:
            for child in s["children"]:
                walk(child.removeprefix("IPY_MODEL_"))
        elif name in ("HTMLModel", "HTMLMathModel"):
            parts.append(s.get("value", ""))
        elif name == "LabelModel":
            parts.append(html.escape(s.get("value", "")))
        elif name in ("FloatProgressModel", "IntProgressModel"):
            parts.append(f'<progress value="{s.get("value", 0)}" max="{s.get("max", 100)}"></progress>')
        elif "value" in s or "index" in s:
            controls.append(f"{html.escape(str(s.get('description', '')))} = <b>{html.escape(_label(s))}</b>")

    walk(model_id)
    block = f'<div class="widget-static">{"".join(parts)}</div>' if parts else ""
    if controls or not (parts or captured):
        block += ('<p class="widget-note">Interactive widget: run the notebook in JupyterLab (<code>make lab'
                  '</code>) to use it. Shown as the run left it' + (": " + ", ".join(controls) if controls else "")
                  + ".</p>")
    return [{"output_type": "display_data", "data": {"text/html": block}, "metadata": {}}] + captured


def static_notebook(nb: dict) -> dict:
    """A copy of an executed notebook whose widget outputs are replaced by their static rendering,
    without the widget state, so that nbconvert adds no widget script."""
    import nbformat
    nb = json.loads(json.dumps(nb))
    models = nb["metadata"].pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb["cells"]:
        outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            outputs += _widget_outputs(view["model_id"], models) if view else [out]
        if "outputs" in cell:
            cell["outputs"] = outputs
    return nbformat.reads(json.dumps(nb), as_version=4)  # joins the line lists as nbformat.read does


def _notebook_links(page: str, stems: list[str]) -> str:
    """A notebook's links to another notebook of the book (``03_....ipynb#section``) point to its page."""
    return re.sub(r'href="(\d\d_\w+)\.ipynb(#[^"]*)?"',
                  lambda m: f'href="{m[1]}.html{m[2] or ""}"' if m[1] in stems else m[0], page)


def _exporter():
    from nbconvert import HTMLExporter
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    exporter.raw_template = TEMPLATE
    return exporter


def _about(nb: dict) -> dict:
    """Title and paper line from the notebook's first markdown cell; parameters and time from papermill."""
    first = next(("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"), "")
    title = re.search(r"^#\s+(.+)$", first, re.M)
    paper = re.search(r"\*\*Paper\.\*\*\s*(.+?)(?:\n\s*\n|$)", first, re.S)
    pm = nb.get("metadata", {}).get("papermill", {})
    return {"title": title.group(1).strip() if title else "",
            "paper": " ".join(paper.group(1).split()) if paper else "",
            "parameters": pm.get("parameters", {}), "duration": pm.get("duration"), "end": pm.get("end_time")}


def _params(about: dict) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in about["parameters"].items() if k != "OUT_DIR")
    return shown or "its defaults"


def _nav(pages: list[str], i: int, about: dict) -> str:
    links = ['<a href="index.html">Book index</a>']
    if i > 0:
        links.append(f'<a href="{pages[i - 1]}.html">&larr; {html.escape(pages[i - 1])}</a>')
    if i + 1 < len(pages):
        links.append(f'<a href="{pages[i + 1]}.html">{html.escape(pages[i + 1])} &rarr;</a>')
    when = (about["end"] or "?")[:16].replace("T", " ")  # papermill's ISO time, to the minute (UTC)
    ran = f"executed {when} UTC with {_params(about)}"
    return f'<nav class="book-nav">{" ".join(links)}<br><small>{html.escape(ran)}</small></nav>'


def _headings(page: str) -> list[tuple[str, str]]:
    """(id, text) of every heading nbconvert anchored on a page."""
    found = re.findall(r'<h[1-6][^>]*\sid="([^"]+)"[^>]*>(.*?)</h[1-6]>', page, re.S)
    return [(html.unescape(i), html.unescape(re.sub(r"<a class=\"anchor-link\".*?</a>|<[^>]+>", "", text)).strip())
            for i, text in found]


def _paper_table(stems: list[str], headings: dict[str, list[tuple[str, str]]]) -> str:
    """The paper's items in its order, each linked to the first heading that names it (case-insensitive)."""
    rows = []
    for part, items in PAPER:
        rows.append(f'<tr><th colspan="3">{html.escape(part)}</th></tr>')
        for item, what, prefix, words in items:
            stem = next((s for s in stems if s.startswith(prefix)), None)
            hit = next(((i, t) for i, t in headings.get(stem, []) if words.lower() in t.lower()), None)
            if stem is None:
                cell = f'<span class="missing">notebook {prefix} was not run</span>'
            else:
                href = f"{stem}.html" + (f"#{hit[0]}" if hit else "")
                cell = f'<a href="{html.escape(href)}">{prefix} · {html.escape(hit[1] if hit else stem)}</a>'
            rows.append(f"<tr><td>{html.escape(item)}</td><td>{html.escape(what)}</td><td>{cell}</td></tr>")
    return ('<table id="paper-table"><tr><th>Paper</th><th>Reproduced by</th><th>Notebook, section</th></tr>'
            + "".join(rows) + "</table>")


def _hrefs(stems: list[str], headings: dict, book: Path):
    """Links for the first page: a notebook section (its page, at the first heading naming ``words`` when there
    is one; the paper table when the notebook was not run) and a file (``results/...`` as copied into the
    book; a reader's output relative to the book)."""
    def section(stem: str, words: str) -> str:
        if stem not in stems:
            return "#paper"
        hit = next((i for i, t in headings.get(stem, []) if words.lower() in t.lower()), None)
        return f"{stem}.html" + (f"#{hit}" if hit else "")

    def file(path: str) -> str:
        return path if path.startswith("results/") else os.path.relpath(path, book)
    return section, file


def _summary(out: Path) -> str:
    from nbconvert.filters import markdown2html
    path = out / "summary.md"
    if not path.exists():
        return f"<p>No {html.escape(str(path))} yet: the main job writes it after the last notebook.</p>"
    text = re.sub(r"\A#[^\n]*\n", "", path.read_text())  # the file's own title; the index has one
    return markdown2html(text)


def _results(results: Path, book: Path) -> str:
    """What ``results/`` holds (paper-scale runs): small text files copied and linked, their JSON's
    top-level scalars shown; larger files (weights) listed with their size."""
    files = sorted(p for p in results.rglob("*") if p.is_file()) if results.is_dir() else []
    if not files:
        return (f"<p>No paper-scale results in this checkout ({html.escape(str(results))} is absent or empty): "
                "the numbers above are this run's own.</p>")
    rows = []
    for f in files:
        rel = f.relative_to(results).as_posix()
        name, info = html.escape(rel), f"{f.stat().st_size / 1e3:.1f} kB"
        if f.suffix in (".json", ".md", ".csv", ".txt") and f.stat().st_size < 2_000_000:
            (book / "results" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, book / "results" / rel)
            name = f'<a href="results/{html.escape(rel)}">{name}</a>'
        if f.suffix == ".json":
            data = json.loads(f.read_text())
            if isinstance(data, dict):
                info = ", ".join(f"{k}={v}" for k, v in data.items() if isinstance(v, (str, int, float, bool)))[:300]
        rows.append(f"<tr><td>{name}</td><td>{html.escape(info)}</td></tr>")
    return "<table><tr><th>file</th><th>contents</th></tr>" + "".join(rows) + "</table>"


def _index(out: Path, book: Path, results: Path, abouts: dict[str, dict], headings: dict) -> str:
    listing = _results(results, book)  # copies results/ into the book first, so that the front page links resolve
    front = book_front.front(results.parent, out, *_hrefs(list(abouts), headings, book))
    notebooks = "".join(
        f'<li><a href="{s}.html">{html.escape(a["title"] or s)}</a><br><small>Paper: {html.escape(a["paper"])}; '
        f'ran {a["duration"] or 0:.0f} s with {html.escape(_params(a))}</small></li>' for s, a in abouts.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Deep Residual Learning: the executed notebooks</title>
<style>{CSS}{book_front.CSS}</style></head>
<body class="book">
<h1>Deep Residual Learning for Image Recognition, reproduced</h1>
<p>A reproduction of He, Zhang, Ren and Sun, CVPR 2016 (<a href="{PAPER_URL}">arXiv:1512.03385</a>). First the
paper's figures and tables from this project's own runs, beside the paper's numbers, and the scorecard of its
claims; then <a href="#paper">the paper section by section</a>, each part linked to the executed notebook that
reproduces it (each page headed by the parameters it ran with; <code>make lab</code> to change them), and
<a href="#summary">every number this run measured</a>.</p>
{front}
<h2 id="paper">The paper, section by section</h2>
{_paper_table(list(abouts), headings)}
<h2 id="summary">Every number of this run beside the paper (this run's scale)</h2>
<p>The numbers the notebooks measured in this run, at the parameters each page shows: toy scale with the
defaults, the paper's scale only where you set its parameters. The paper-scale runs are the figures and tables
above and the files below.</p>
{_summary(out)}
<h2 id="paper-scale">Paper-scale results (<code>results/</code>)</h2>
{listing}
<h2 id="notebooks">The notebooks</h2>
<ol>{notebooks}</ol>
</body></html>
"""


def build(out_dir: str | os.PathLike | None = None, results_dir: str | os.PathLike | None = None) -> Path:
    """Write ``<out>/book/`` from ``<out>/executed/*.ipynb``; returns the path of its ``index.html``."""
    out = output_dir(out_dir)
    executed = sorted((out / "executed").glob("[0-9][0-9]_*.ipynb"))
    if not executed:
        raise FileNotFoundError(f"no executed notebooks in {out / 'executed'}: run `make run` (or `python -m "
                                f"resnet_lib run-notebooks --out {out}`) first, then `make book`")
    book, partial = out / "book", out / "book.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    exporter, stems = _exporter(), [p.stem for p in executed]
    abouts, headings = {}, {}
    for i, path in enumerate(executed):
        nb = json.loads(path.read_text())
        abouts[path.stem] = _about(nb)
        resources = {"book_css": CSS, "book_nav": _nav(stems, i, abouts[path.stem]),
                     "metadata": {"name": abouts[path.stem]["title"] or path.stem}}
        page, _ = exporter.from_notebook_node(static_notebook(nb), resources=resources)
        headings[path.stem] = _headings(page)
        (partial / f"{path.stem}.html").write_text(_notebook_links(page, stems))
    results = Path(results_dir) if results_dir else project_root() / "results"
    (partial / "index.html").write_text(_index(out, partial, results, abouts, headings))
    shutil.rmtree(book, ignore_errors=True)
    partial.rename(book)
    return book / "index.html"


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m resnet_lib book", description=build.__doc__)
    ap.add_argument("--out", default=None, help="the main job's output folder (default: $RESNET_OUT or ./outputs)")
    ap.add_argument("--results", default=None, help="paper-scale results to list (default: <project>/results)")
    a = ap.parse_args(argv)
    try:
        print(f"book: {build(a.out, a.results)}")
    except FileNotFoundError as e:
        raise SystemExit(f"book: {e}") from None
    return 0
