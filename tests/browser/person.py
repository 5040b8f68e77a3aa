"""What a person does with a notebook in JupyterLab, and what they would see, in headless Chromium.

Debian's chromium is driven by Playwright (its own browser download cannot work offline). Every
step goes through the interface a person uses: the kernel dialog's Select button, the news toast's
No, the Run menu's Run All Cells, the keyboard on a slider, the mouse on a selector.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

# The notebook on show: other tabs' panels stay in the page, hidden.
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
# Where a widget could not be shown, ipywidgets leaves one of these in place of the view.
WIDGET_PLACEHOLDERS = ("Loading widget...", "Error displaying widget")
# Controls a person can move; progress bars and buttons are not "what is shown" controls.
CONTROLS = {"slider": ".jp-OutputArea-output .widget-slider .noUi-handle",
            "dropdown": ".jp-OutputArea-output .widget-dropdown select",
            "selection list": ".jp-OutputArea-output :is(.widget-select-multiple, .widget-select) select",
            "toggle buttons": ".jp-OutputArea-output .widget-toggle-buttons button",
            "radio": ".jp-OutputArea-output .widget-radio-box input"}


@dataclass
class Seen:
    """What the notebook showed after Run All Cells."""
    code_cells: int = 0
    not_run: list[int] = field(default_factory=list)  # code cells (1-based) left without an execution count
    errors: list[str] = field(default_factory=list)   # tracebacks shown in output areas
    stderr: list[str] = field(default_factory=list)   # other stderr (warnings): reported, not failed
    widgets: int = 0
    broken_widgets: list[str] = field(default_factory=list)
    images: int = 0
    broken_images: int = 0
    moved: str | None = None       # which control was moved, or None if the notebook has none
    changed: bool | None = None    # did what is shown change after moving it
    seconds: float = 0.0

    def problems(self) -> list[str]:
        out = [f"cell error: {e}" for e in self.errors]
        if self.not_run:
            out.append(f"code cells {self.not_run} never ran (Run All stops at an error or a dead kernel)")
        out += [f"widget not rendered: {w}" for w in self.broken_widgets]
        if self.broken_images:
            out.append(f"{self.broken_images} of {self.images} images did not render (naturalWidth 0)")
        if self.moved and not self.changed:
            out.append(f"moving the first {self.moved} changed nothing that is shown")
        return out


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def open_notebook(page, url: str, timeout_s: float = 90) -> None:
    """Open the notebook's address; answer the kernel dialog and the news toast as a person would."""
    page.goto(url, timeout=timeout_s * 1000)
    page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell", timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        choose_kernel_if_asked(page)
        if kernel_ready(page):
            break
        time.sleep(0.5)
    else:
        raise TimeoutError(f"the kernel did not become idle within {timeout_s:.0f} s")
    dismiss_news(page, wait_s=3)


def kernel_ready(page) -> bool:
    """A kernel is attached (the toolbar names it, not 'No Kernel') and idle."""
    return page.evaluate("""() => {
        const name = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-NotebookPanel-toolbar .jp-KernelName');
        const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
        return !!name && !!ind && !/no kernel/i.test(name.textContent) && ind.dataset.status === 'idle'; }""")


def choose_kernel_if_asked(page) -> bool:
    """A notebook without a recorded kernel opens JupyterLab's 'Select Kernel' dialog: accept the
    kernel it proposes (this project's Python 3), as a person clicking 'Select' would."""
    dialog = page.locator(".jp-Dialog")
    if not dialog.count() or "kernel" not in dialog.first.inner_text().lower():
        return False
    dialog.first.locator("button.jp-mod-accept").click()
    return True


def dismiss_news(page, wait_s: float = 0) -> bool:
    """Answer 'No' to 'Would you like to get notified about official Jupyter news?'."""
    toast = page.locator(".Toastify__toast", has_text="Jupyter news")
    try:
        toast.first.wait_for(timeout=wait_s * 1000 or 1)
    except Exception:  # noqa: BLE001 -- Playwright's TimeoutError: no toast is fine
        return False
    toast.first.get_by_role("button", name="No", exact=True).click()
    return True


def run_all(page, timeout_s: float = 300) -> None:
    """Run > Run All Cells, then wait until no cell is queued or running and the kernel is idle."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function("""() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')]
                                     .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))""", timeout=30_000)
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        choose_kernel_if_asked(page)
        busy = page.evaluate("""() => {
            const prompts = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')];
            const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
            return prompts.some(p => p.textContent.includes('*')) || !ind || ind.dataset.status !== 'idle'; }""")
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.5:  # idle for a moment: no cell is about to start
            return
        time.sleep(0.5)
    raise TimeoutError(f"Run All Cells did not finish within {timeout_s:.0f} s")


_LOOK = """(placeholders) => {
  const cells = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')];
  const notRun = [];
  cells.forEach((c, i) => {
    const p = c.querySelector('.jp-InputArea-prompt');
    if (!p || !/\\[\\d+\\]/.test(p.textContent)) notRun.push(i + 1);
  });
  const stderr = [...document.querySelectorAll(
      '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
      .map(e => e.innerText);
  const views = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output .jupyter-widgets')];
  // ipywidgets draws a view it could not create as an "error widget" ("Click to show javascript error")
  const errorViews = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jupyter-widgets-error-widget')];
  const broken = errorViews.map(v => (v.innerText.trim() || 'error widget').slice(0, 200))
      .concat(views.filter(v => placeholders.some(t => v.innerText.trim().startsWith(t)))
                   .map(v => v.innerText.trim().slice(0, 200)));
  const outputs = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output')];
  outputs.forEach(o => { if (placeholders.some(t => o.innerText.trim().startsWith(t)))
                           broken.push(o.innerText.trim().slice(0, 200)); });
  const imgs = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output img')];
  const loading = broken.filter(t => t.startsWith(placeholders[0])).length;
  return {codeCells: cells.length, notRun, stderr, widgets: views.length, broken: [...new Set(broken)], loading,
          images: imgs.length, brokenImages: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length};
}"""


def _is_traceback(text: str) -> bool:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    # IPython shows an error as a traceback ending in "SomeError: message"; warnings end otherwise.
    return "Traceback (most recent call last)" in text or (
        ":" in last and last.split(":")[0].strip().split(".")[-1].endswith(("Error", "Exception", "Interrupt")))


def look(page, settle_s: float = 20) -> Seen:
    """Scroll through the outputs as a reader would, then record what is shown. Widgets and images
    get up to ``settle_s`` to finish rendering before they count as broken."""
    for img in page.locator(f"{PANEL} .jp-OutputArea-output img").all():
        img.scroll_into_view_if_needed()
    deadline = time.monotonic() + settle_s
    while True:  # "Loading widget..." and undecoded images are transient; error widgets are not
        r = page.evaluate(_LOOK, list(WIDGET_PLACEHOLDERS))
        if (not r["loading"] and not r["brokenImages"]) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    seen = Seen(code_cells=r["codeCells"], not_run=r["notRun"], widgets=r["widgets"],
                broken_widgets=r["broken"], images=r["images"], broken_images=r["brokenImages"])
    for text in r["stderr"]:
        (seen.errors if _is_traceback(text) else seen.stderr).append(_tail(text))
    return seen


def _tail(text: str, n: int = 3) -> str:
    return " | ".join([ln for ln in text.strip().splitlines() if ln.strip()][-n:])[:400]


_SHOWN = """() => {
  const parts = [];
  document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .widget-output, .jp-NotebookPanel:not(.lm-mod-hidden) .widget-html, '
                            + '.jp-NotebookPanel:not(.lm-mod-hidden) .widget-htmlmath').forEach(e => parts.push(e.innerText));
  document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output img').forEach(i => parts.push(i.src));
  return parts.join('\\u0000');
}"""


def shown(page) -> str:
    """A fingerprint of what the notebook displays (outputs, figures), not of the controls."""
    return hashlib.sha256(page.evaluate(_SHOWN).encode()).hexdigest()


def move_first_control(page, timeout_s: float = 15) -> tuple[str | None, bool | None]:
    """Move the first slider or selector by one step, as a person would (keyboard on a slider,
    a pick in a list); report whether what is shown changed within ``timeout_s``."""
    for kind, selector in CONTROLS.items():
        controls = page.locator(f"{PANEL} {selector}")
        if controls.count():
            break
    else:
        return None, None
    before = shown(page)
    control = controls.first
    control.scroll_into_view_if_needed()
    if kind == "slider":
        _step_slider(page, control)
    elif kind in ("dropdown", "selection list"):
        options = control.locator("option").all_inner_texts()
        chosen = control.evaluate("s => [...s.selectedOptions].map(o => o.text)")
        if kind == "dropdown" or len(chosen) != 1:
            pick = [o for o in options if o not in chosen][:1] if kind == "dropdown" else chosen[:1] or options[:1]
        else:  # one of several picked: pick another one as well
            pick = chosen + [o for o in options if o not in chosen][:1]
        if not pick or pick == chosen:
            return kind, None  # a single option: nothing to change
        control.select_option(label=pick)
    else:
        group = page.locator(f"{PANEL} {selector}")
        group.nth(1 if group.count() > 1 else 0).click()
    return kind, _changes(page, before, timeout_s)


def _step_slider(page, handle) -> None:
    """One step right, or left where the slider already sits at its right end."""
    readout = handle.locator("xpath=ancestor::div[contains(@class, 'widget-slider')]//div[contains(@class, "
                             "'widget-readout')]")
    value = readout.first.inner_text() if readout.count() else None
    handle.focus()
    page.keyboard.press("ArrowRight")
    time.sleep(0.3)
    if value is not None and readout.first.inner_text() == value:
        page.keyboard.press("ArrowLeft")


def _changes(page, before: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if shown(page) != before:
            return True
        time.sleep(0.3)
    return False


def screenshot(page, path: Path) -> Path:
    """The view at the first problem (an error output, a broken widget) or else at the first control."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for sel in ('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
                ".jupyter-widgets-error-widget", *CONTROLS.values()):
        target = page.locator(f"{PANEL} {sel}")
        if target.count():
            try:
                target.first.scroll_into_view_if_needed(timeout=2000)
            except Exception:  # noqa: BLE001 -- a screenshot of wherever we are is still useful
                pass
            break
    page.screenshot(path=str(path))
    return path


def use_notebook(page, url: str, shots: Path, stem: str, run_timeout_s: float = 300) -> Seen:
    """The whole visit: open, Run All, look, move a control, screenshot. Returns what was seen."""
    t0 = time.monotonic()
    # the news toast may also come late; Playwright answers it whenever it would block a click
    page.add_locator_handler(page.locator(".Toastify__toast", has_text="Jupyter news"),
                             lambda toast: toast.get_by_role("button", name="No", exact=True).click())
    try:
        open_notebook(page, url)
        run_all(page, run_timeout_s)
    except Exception as e:  # noqa: BLE001 -- keep the picture of where it got stuck, then fail
        screenshot(page, shots / f"{stem}.png")
        raise RuntimeError(f"{stem}: {type(e).__name__}: {str(e).splitlines()[0]}; "
                           f"screenshot: {shots / f'{stem}.png'}") from e
    seen = look(page)
    screenshot(page, shots / f"{stem}.png")
    if not seen.errors and not seen.not_run:
        seen.moved, seen.changed = move_first_control(page)
        if seen.moved:
            page.screenshot(path=str(shots / f"{stem}_moved.png"))
    seen.seconds = round(time.monotonic() - t0, 1)
    return seen
