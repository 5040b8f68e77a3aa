"""Shared fixtures. Notebook tests execute a notebook with its tiny parameters (from the
notebook's metadata) through the same runner as the main job, and return what it saved."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet_lib.runner import notebooks


@pytest.fixture(scope="session")
def nb_out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nb_outputs")


@pytest.fixture(scope="session")
def run_tiny(nb_out):
    """``run_tiny("03", **overrides)`` -> the notebook's results.json as a dict."""
    def _run(name: str, **overrides) -> dict:
        nb = notebooks.find_notebook(name)
        executed = notebooks.run_notebook(nb, nb_out, params=overrides, tiny=True, progress=False)
        assert executed.exists()
        return json.loads((nb_out / nb.stem / "results.json").read_text())
    return _run


def pytest_collection_modifyitems(items):
    """test_book.py builds the book from the notebooks the notebook tests executed into ``nb_out``:
    it runs last, so those executions are reused rather than repeated."""
    items.sort(key=lambda item: item.path.name == "test_book.py")
