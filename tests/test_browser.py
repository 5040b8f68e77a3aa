"""Every notebook in JupyterLab, in a real (headless) browser, as a person meets it.

The test starts JupyterLab from this environment on a free localhost port with a token, serving
copies of the notebooks with their tiny parameters injected. For each notebook, Chromium opens
it, picks the kernel if asked, says No to the news toast, runs Run > Run All Cells and waits for
idle, then checks what a person would see: no error output, no cell left unrun, every widget
rendered, every image rendered; and that moving the first slider or selector changes what is
shown. A screenshot per notebook is saved under build/browser/ (named in any failure message).

Three planted notebooks (tests/browser/planted.py) show the check catches a cell that raises,
a widget whose extension is missing and a control wired to nothing.

Needs Debian's chromium (/usr/bin/chromium; .ci/run installs it) and the playwright package.
Quick local runs can leave it out: ``pytest -m "not browser"``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from resnet_lib.base.paths import project_root
from resnet_lib.runner import cli, notebooks

pytestmark = pytest.mark.browser

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the [test] extra)")
from browser import person, planted, server  # noqa: E402  (tests/browser, after the skip above)

SHOTS = project_root() / "build" / "browser"
NOTEBOOKS = [nb.name for nb in notebooks.list_notebooks()]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The folder JupyterLab serves: every notebook with tiny parameters, and the planted ones."""
    if not Path(person.CHROMIUM).exists():
        pytest.fail(f"{person.CHROMIUM} is missing: apt-get update && apt-get install -y chromium "
                    "(or deselect with -m 'not browser')")
    root = tmp_path_factory.mktemp("lab")
    if NOTEBOOKS:
        assert cli.parameterize([str(root), "--tiny", "--out", str(root / "outputs")]) == 0
    planted.write_planted(root)
    return root


@pytest.fixture(scope="module")
def lab(served, tmp_path_factory):
    running = server.start_lab(served, tmp_path_factory.mktemp("lab_state"))
    yield running
    server.stop_lab(running)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = person.launch(p)
        yield chromium
        chromium.close()


@pytest.fixture
def visit(lab, browser):
    """``visit("name.ipynb")`` -> what a person saw; the page is closed and kernels shut down after."""
    pages = []

    def _visit(name: str) -> person.Seen:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        pages.append(page)
        seen = person.use_notebook(page, lab.url(name), SHOTS, Path(name).stem)
        # what each notebook showed, for a person reading CI's log or build/browser/
        (SHOTS / f"{Path(name).stem}.json").write_text(json.dumps(dataclasses.asdict(seen), indent=1))
        return seen

    yield _visit
    for page in pages:
        page.close()
    server.shutdown_kernels(lab)  # two cores: a finished notebook's kernel must not slow the next


def _report(name: str, seen: person.Seen) -> str:
    return (f"{name} in JupyterLab: {seen.problems()}; warnings on stderr: {seen.stderr}; "
            f"screenshot: {SHOTS / (Path(name).stem + '.png')}")


@pytest.mark.notebook
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_in_jupyterlab(visit, name):
    seen = visit(name)
    assert seen.code_cells > 0, f"{name}: no code cell found on the page; screenshot under {SHOTS}"
    assert not seen.problems(), _report(name, seen)


def test_planted_good_notebook_passes(visit):
    seen = visit("planted_ok.ipynb")  # no kernel recorded: the kernel dialog is answered
    assert not seen.problems(), _report("planted_ok.ipynb", seen)
    assert seen.images == 1 and seen.widgets >= 3  # the figure; interact box, slider, selector, output
    assert (seen.moved, seen.changed) == ("slider", True)
    shot = SHOTS / "planted_ok.png"
    assert shot.exists() and shot.stat().st_size > 10_000  # a real picture, not a blank page


def test_planted_cell_error_is_caught(visit):
    seen = visit("planted_error.ipynb")
    assert any("planted error" in e for e in seen.errors), seen
    assert seen.not_run == [3], seen  # Run All stops at the error, as a person sees
    assert seen.problems()


def test_planted_broken_widget_is_caught(visit):
    seen = visit("planted_broken_widget.ipynb")
    assert seen.broken_widgets, seen
    assert (seen.moved, seen.changed) == ("slider", False), seen  # the slider moves, nothing else does
    assert len(seen.problems()) == 2

