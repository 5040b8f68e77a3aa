"""The book (``resnet_lib.runner.book``) opened from disk in headless Chromium, as a reader meets it.

It is built from the notebooks the notebook tests executed with tiny parameters into the session's
``nb_out`` (conftest runs this file last; run alone, it executes the missing notebooks first, a few
minutes). Every page must load with no JavaScript error and no request beyond the book's own files,
every image must render, every link must reach a file of the book and, with a fragment, a heading
on that page; widgets must show as static text, not as widget boxes or their text fallback.
Screenshots land in build/book/.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from resnet_lib.base.paths import project_root
from resnet_lib.experiments import scorecard
from resnet_lib.runner import book, notebooks

SHOTS = project_root() / "build" / "book"
READ_PAGE = """() => ({
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    images: [...document.images].map(i => i.complete && i.naturalWidth > 0),
    scripts: document.scripts.length,
    notes: document.querySelectorAll('.widget-note').length,
    statuses: [...document.querySelectorAll('td.status')].map(e => e.dataset.status),
    paper_links: [...document.querySelectorAll('#paper-table a[href]')].map(a => a.href),
    front_images: [...document.querySelectorAll('#fig6 ~ figure img')].map(i => i.complete && i.naturalWidth > 0),
    text: document.body.innerText,
})"""


@pytest.fixture(scope="module")
def built(nb_out, run_tiny, tmp_path_factory) -> Path:
    for nb in notebooks.list_notebooks():
        if not (nb_out / "executed" / nb.name).exists():
            run_tiny(nb.stem)
    notebooks.gather_summary(nb_out)
    results = tmp_path_factory.mktemp("checkout") / "results"  # the shipped results (figures, scorecard) ...
    shutil.copytree(project_root() / "results", results, ignore=shutil.ignore_patterns("*.tgz", "*.pt"))
    # ... and planted paper-scale files: a run record and weights
    (results / "cifar10" / "planted_run.json").write_text(json.dumps({"planted": "by test_book", "seed": 1}))
    (results / "cifar10" / "planted.safetensors").write_bytes(b"\0" * 2048)
    return book.build(nb_out, results_dir=results)


def _visit(browser, url: str, shot: Path, full_page: bool = False, front: Path | None = None) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url, wait_until="load")
    seen = page.evaluate(READ_PAGE)
    page.screenshot(path=str(shot), full_page=full_page)
    if front:  # the first page as a reader opens it: docs/book_front.png is such a picture
        page.set_viewport_size({"width": 1280, "height": 1500})
        page.screenshot(path=str(front))
    page.close()
    return {**seen, "errors": errors, "foreign": [r for r in requests if not r.startswith(("file:", "data:"))]}


def _link_problems(links: list[str], pages: dict[str, dict]) -> list[str]:
    problems = []
    for link in links:
        if link.startswith(book.PAPER_URL):
            continue  # the paper itself: shown, never fetched
        url = urlparse(link)
        target = Path(unquote(url.path))
        if url.scheme != "file" or not target.is_file():
            problems.append(f"{link}: no such file in the book")
        elif url.fragment and not {url.fragment, unquote(url.fragment)} & set(pages[target.name]["ids"]):
            problems.append(f"{link}: no element with that id")
    return problems


@pytest.mark.browser
@pytest.mark.notebook
def test_book_reads_offline_in_chromium(built):
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the [test] extra)")
    from browser import person  # tests/browser: Debian's chromium with the project's flags
    if not Path(person.CHROMIUM).exists():
        pytest.fail(f"{person.CHROMIUM} is missing: apt-get install -y chromium (or deselect with -m 'not browser')")
    SHOTS.mkdir(parents=True, exist_ok=True)
    files = sorted(built.parent.glob("*.html"))
    with playwright_api.sync_playwright() as p:
        chromium = person.launch(p)
        pages = {f.name: _visit(chromium, f.as_uri(), SHOTS / f"{f.stem}.png", full_page=f.name == "index.html",
                                front=SHOTS / "index_front.png" if f.name == "index.html" else None) for f in files}
        chromium.close()
    for name, seen in pages.items():
        where = f"{name} (screenshot {SHOTS / name.replace('.html', '.png')})"
        assert not seen["errors"], f"{where}: {seen['errors']}"
        assert not seen["foreign"], f"{where} fetched beyond the book: {seen['foreign']}"
        assert all(seen["images"]), f"{where}: {seen['images'].count(False)} images did not render"
        assert seen["scripts"] == 0, f"{where}: {seen['scripts']} scripts left in a static page"
        assert "children=(" not in seen["text"], f"{where}: a widget shows as its text fallback"
        assert not _link_problems(seen["links"], pages), f"{where}: {_link_problems(seen['links'], pages)}"
    stems = [nb.stem for nb in notebooks.list_notebooks()]
    assert sorted(pages) == sorted(["index.html"] + [f"{s}.html" for s in stems])
    assert all(pages[f"{s}.html"]["images"] for s in stems), "a notebook page shows no figure"
    index = pages["index.html"]
    anchored = [link for link in index["paper_links"] if "#" in link and Path(urlparse(link).path).stem in stems]
    assert len(anchored) == sum(len(rows) for _, rows in book.PAPER), "a paper item found no notebook heading"
    # the first page opens with the paper's figures from the shipped runs, then Table 6 and the scorecard
    assert {"fig6", "fig7", "table6", "scorecard"} <= set(index["ids"])
    assert index["text"].index("Fig. 6") < index["text"].index("The paper, section by section")
    assert len(index["front_images"]) == 2 and all(index["front_images"]), "Fig. 6 or Fig. 7 did not render"
    claims = scorecard.scorecard(project_root())  # as many rows in the scorecard table, besides the figures' rows
    assert len(index["statuses"]) > len(claims) and set(index["statuses"]) <= set(scorecard.STATUSES)
    assert "this run's scale" in index["text"]  # the toy-scale table says which scale it is
    assert (SHOTS / "index_front.png").stat().st_size > 20_000
    assert "planted_run.json" in index["text"] and "seed=1" in index["text"]
    rows = [ln for ln in (built.parent.parent / "summary.md").read_text().splitlines() if ln.startswith("| 0")]
    quantities = [re.split(r"(?<!\\)\|", row)[2].strip().replace("\\|", "|") for row in rows]  # cells hold \|
    assert quantities and all(q in index["text"] for q in quantities), "the summary table is not on the index"
    assert (SHOTS / "index.png").stat().st_size > 20_000  # a real picture, not a blank page


def test_widgets_become_their_last_state():
    """A tqdm bar shows its final text and progress; an interact shows its control's value, a note,
    and what its Output widget captured (a figure), with no widget state left for a script to need."""
    state = {"bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_desc", "IPY_MODEL_prog"]}},
             "desc": {"model_name": "HTMLModel", "state": {"value": "nets: 100%"}},
             "prog": {"model_name": "FloatProgressModel", "state": {"value": 4, "max": 4}},
             "ui": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_dd", "IPY_MODEL_out"]}},
             "dd": {"model_name": "DropdownModel", "state": {"description": "depth", "index": 1,
                                                            "_options_labels": ["18", "34"]}},
             "out": {"model_name": "OutputModel", "state": {"outputs": [
                 {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo="}, "metadata": {}}]}}}
    view = "application/vnd.jupyter.widget-view+json"
    cell = {"cell_type": "code", "id": "planted", "execution_count": 1, "metadata": {}, "source": "", "outputs": [
        {"output_type": "display_data", "metadata": {}, "data": {view: {"model_id": m}, "text/plain": "HBox()"}}
        for m in ("bar", "ui")]}
    nb = book.static_notebook({"nbformat": 4, "nbformat_minor": 5, "cells": [cell], "metadata": {
        "widgets": {book.WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}}})
    outs = nb.cells[0].outputs
    assert "widgets" not in nb.metadata and all(view not in o.get("data", {}) for o in outs)
    bar, ui, figure = (o["data"] for o in outs)
    assert "nets: 100%" in bar["text/html"] and '<progress value="4" max="4">' in bar["text/html"]
    assert "widget-note" not in bar["text/html"]  # a progress bar needs no note
    assert "widget-note" in ui["text/html"] and "depth = <b>34</b>" in ui["text/html"]
    assert figure["image/png"] == "iVBORw0KGgo="
