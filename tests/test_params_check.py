"""Notebook parameters are checked by one module (resnet_lib/runner/params.py) in both places that run a
notebook: the project's runner before the kernel starts, and the notebook's own check cell, the first code
cell after ``parameters``, which is what protects a run by plain papermill or Jupyter."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from resnet_lib.base.errors import ParameterError, UserError
from resnet_lib.runner import notebooks
from resnet_lib.runner.params import check_notebook_parameters, check_parameters, read_parameters, type_ok

NB03 = "03_cifar10_plain_vs_residual"


@pytest.mark.parametrize("default, value, ok", [
    (8, 4, True), (8, "abc", False), (8, 4.5, False), (8, True, False),
    (0.1, 1, True), (0.1, 0.5, True), (0.1, "0.1", False),
    (False, True, True), (False, 0, False),
    ("auto", "cpu", True), ("auto", 3, False),
    ([20, 56], [8, 14, 20], True), ([20, 56], (8,), True), ([20, 56], [], True),
    ([20, 56], [20.5], False), ([20, 56], ["a"], False), ([20, 56], "[20, 56]", False), ([20, 56], 20, False),
    ([0.5, 0.75], [1, 0.5], True), (["plain", "resnet"], ["plain"], True), (["plain", "resnet"], [1], False),
    ([], [1, "x"], True), (None, "anything", True), (3, None, True),
])
def test_type_rules(default, value, ok):
    assert type_ok(default, value) is ok


def test_runner_check_names_the_fix():
    path = notebooks.find_notebook(NB03)
    check_parameters(path, {"EVALS": 4, "LR": 1, "DEPTHS": [8, 14], "NETS": ["resnet"]})  # all fine
    with pytest.raises(ParameterError) as e:
        check_parameters(path, {"EVALS": "abc", "DEPTH": 20, "evals": 3, "DEPTHS": [20.5]})
    msg, evals = str(e.value), read_parameters(path)["EVALS"]
    assert f"parameter EVALS should be int like its default {evals}, got str 'abc'; pass it as -p EVALS {evals}" in msg
    assert "unknown parameter 'DEPTH' (did you mean DEPTHS?)" in msg
    assert "unknown parameter 'evals' (did you mean EVALS?)" in msg
    depths = read_parameters(path)["DEPTHS"]
    assert "DEPTHS should be list of int" in msg and f'-y "DEPTHS: {depths}"' in msg
    assert isinstance(e.value, UserError) and isinstance(e.value, ValueError)


def _namespace(path: Path, **overrides) -> dict:
    """A kernel's globals after the parameters cell, papermill's injected cell and a later rerun."""
    ns = {"__name__": "__main__", "_": None, "In": [], "get_ipython": print, "np": object()}
    ns.update(read_parameters(path))
    ns.update(overrides)
    return ns


def test_the_cell_check_refuses_what_the_runner_refuses():
    path = notebooks.find_notebook(NB03)
    check_notebook_parameters(_namespace(path), NB03)
    check_notebook_parameters(_namespace(path, EVALS=4, LR=1), NB03)
    for bad in ({"EVALS": "abc"}, {"DEPTH": 20}, {"DEPTHS": ["20"]}, {"FORCE": 1}):
        with pytest.raises(ParameterError) as in_cell:
            check_notebook_parameters(_namespace(path, **bad), NB03)
        with pytest.raises(ParameterError) as in_runner:
            check_parameters(path, bad)
        # the same words, apart from the cell's hint about unsaved edits
        assert str(in_runner.value).split(". Its parameters")[0] in str(in_cell.value)


def test_the_cell_check_tolerates_a_rerun_but_not_a_lower_case_spelling():
    path = notebooks.find_notebook(NB03)
    check_notebook_parameters(_namespace(path, NAME="03"), NB03)  # NAME is assigned by a later cell
    with pytest.raises(ParameterError, match="unknown parameter 'evals'"):
        check_notebook_parameters(_namespace(path, evals=4), NB03)
    ns = _namespace(path)
    del ns["EVALS"]
    with pytest.raises(ParameterError, match="EVALS is not defined: run the parameters cell first"):
        check_notebook_parameters(ns, NB03)


def test_every_notebook_passes_its_own_check_with_its_defaults_and_tiny_parameters():
    for path in notebooks.list_notebooks():
        check_notebook_parameters(_namespace(path), path.stem)
        check_notebook_parameters(_namespace(path, **notebooks.tiny_parameters(path)), path.stem)


def test_plain_papermill_stops_at_the_check_cell(tmp_path):
    """No runner involved: papermill's own command line, a mistyped value and a misspelt name."""
    path = notebooks.find_notebook(NB03)
    out = tmp_path / "out.ipynb"
    r = subprocess.run([sys.executable, "-m", "papermill", str(path), str(out), "--cwd", str(path.parent),
                        "-p", "EVALS", "abc", "-p", "LRR", "0.1", "--no-progress-bar"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "ParameterError" in r.stderr and f"pass it as -p EVALS {read_parameters(path)['EVALS']}" in r.stderr
    assert "unknown parameter 'LRR' (did you mean LR?)" in r.stderr
    cells = json.loads(out.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    tags = [c["metadata"].get("tags", []) for c in code]
    assert "parameters" in tags[0] and "injected-parameters" in tags[1]
    failed = [i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c["outputs"])]
    assert failed == [2], "the check cell, right after papermill's injected one, must be the one that fails"
    assert all(c["execution_count"] is None for c in code[3:]), "nothing after the check may run"


def _tiny_notebook(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    params = nbformat.v4.new_code_cell("X = 1  # a number")
    params.metadata["tags"] = ["parameters"]
    probe = nbformat.v4.new_code_cell("from ipykernel.connect import get_connection_file\nimport json\n"
                                      "print(json.load(open(get_connection_file()))['transport'])")
    nb.cells = [params, probe]
    path = tmp_path / "99_probe.ipynb"
    nbformat.write(nb, path)
    return path


def test_the_runner_talks_to_its_kernel_over_ipc(tmp_path, capfd):
    """No "Kernel is running over TCP without encryption" per notebook in the main job's log, and the
    sockets' private folder is gone afterwards."""
    before = set(Path(tempfile.gettempdir()).glob("resnet-kernel-*"))
    executed = notebooks.run_notebook(_tiny_notebook(tmp_path), tmp_path / "out", params={"X": 2}, progress=False)
    out = nbformat.read(executed, as_version=4).cells[-1].outputs[0]["text"]
    assert out.strip() == "ipc"
    assert "without encryption" not in capfd.readouterr().err
    assert set(Path(tempfile.gettempdir()).glob("resnet-kernel-*")) <= before
