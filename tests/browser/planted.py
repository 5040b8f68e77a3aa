"""Small notebooks with known faults, to show that the browser check catches what it claims to.

- ``planted_ok``: a figure, and a slider and a selector wired to an output with ``interact``;
  saved with no kernel recorded, so JupyterLab asks which kernel to use.
- ``planted_error``: its second cell raises, so Run All stops there.
- ``planted_broken_widget``: a widget whose front-end module does not exist (what a missing
  extension looks like), and a slider wired to nothing.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

_KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def _write(path: Path, cells: list[str], kernel: bool = True) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata = dict(_KERNEL) if kernel else {}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, path)
    return path


def write_planted(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "planted_ok": _write(folder / "planted_ok.ipynb", [
            "import matplotlib.pyplot as plt\nimport ipywidgets as w\nprint('ready')",
            "fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([0, 1, 4])\nplt.show()",
            "w.interact(lambda k, kind: print(f'{kind}: {k ** 2}'),\n"
            "           k=w.IntSlider(value=2, min=0, max=5), kind=w.Dropdown(options=['plain', 'residual']));",
        ], kernel=False),
        "planted_error": _write(folder / "planted_error.ipynb", [
            "print('first cell runs')",
            "raise ValueError('planted error: a cell that raises')",
            "print('never reached')",
        ]),
        "planted_broken_widget": _write(folder / "planted_broken_widget.ipynb", [
            "import ipywidgets as w\nfrom traitlets import Unicode\n\n"
            "class FromMissingExtension(w.DOMWidget):\n"
            "    _model_name = Unicode('NoSuchModel').tag(sync=True)\n"
            "    _model_module = Unicode('no-such-widget-extension').tag(sync=True)\n"
            "    _model_module_version = Unicode('1.0.0').tag(sync=True)\n"
            "    _view_name = Unicode('NoSuchView').tag(sync=True)\n"
            "    _view_module = Unicode('no-such-widget-extension').tag(sync=True)\n"
            "    _view_module_version = Unicode('1.0.0').tag(sync=True)\n\n"
            "FromMissingExtension()",
            "w.IntSlider(value=3, min=0, max=10, description='wired to nothing')",
        ]),
    }
