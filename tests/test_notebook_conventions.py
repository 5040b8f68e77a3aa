"""Every committed notebook follows the project's conventions (resnet_lib/notebooks.py, README):

- saved without outputs (reviewable diffs; executed copies go to outputs/ from the main job);
- the Python 3 kernel recorded;
- exactly one ``parameters`` cell, the first code cell, of ``NAME = literal  # comment`` lines,
  with ``OUT_DIR = "../outputs"``; tiny parameters in the metadata that the cell accepts;
- the next code cell checks the parameters (``resnet_lib.runner.params.check_notebook_parameters``);
- the first cell says what it shows, which section/table/figure of the paper, and how long (a budget, or that
  the check cell after the parameters prints the measured time: ``runner.timings``, from results/timings/);
- it saves its results under its own name with ``save_results``;
- at most 2 ``def``/``class`` in its code cells (the library computes, the notebook narrates);
- it ends with Exercises whose answers are hidden: collapsed cells wrapped in <details>.

A planted notebook shows each check can fail.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from resnet_lib.runner import notebooks

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
MAX_DEFS = 2
FIX_OUTPUTS = "jupyter nbconvert --clear-output --inplace {path}"


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _python(src: str) -> str:
    """Code cell source without IPython magics and shell escapes, which ast cannot parse."""
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in src.splitlines())


def _outputs(nb: dict, path: Path) -> list[str]:
    dirty = [i + 1 for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    return [f"cells {dirty} carry outputs or execution counts; commit notebooks without outputs: "
            + FIX_OUTPUTS.format(path=path)] if dirty else []


def _parameters(nb: dict, path: Path) -> list[str]:
    tagged = [i for i, c in enumerate(nb["cells"]) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        return [f"{len(tagged)} cells are tagged 'parameters'; papermill needs exactly one"]
    i = tagged[0]
    problems = []
    if nb["cells"][i]["cell_type"] != "code" or any(c["cell_type"] == "code" for c in nb["cells"][:i]):
        problems.append("the parameters cell must be the first code cell (papermill injects after it)")
    try:
        params = notebooks.notebook_parameters(path)
    except ValueError as e:
        return problems + [str(e)]
    src_lines = _src(nb["cells"][i]).splitlines()
    bare = [n.targets[0].id for n in ast.parse(_src(nb["cells"][i])).body if "#" not in src_lines[n.lineno - 1]]
    if bare:
        problems.append(f"parameters {bare} have no comment (units, the paper's value)")
    if params.get("OUT_DIR") != "../outputs":
        problems.append('the parameters cell must hold OUT_DIR = "../outputs"')
    tiny = nb.get("metadata", {}).get("resnet_lib", {}).get("tiny")
    if not tiny:
        problems.append('metadata {"resnet_lib": {"tiny": {...}}} is missing: parameters for a run in seconds')
    else:
        try:
            notebooks.check_parameters(path, tiny)
        except ValueError as e:
            problems.append(f"tiny parameters: {e}")
    return problems


CHECK_CELL = ("from resnet_lib.runner.params import check_notebook_parameters\n"
              'check_notebook_parameters(globals(), "{stem}")')


def _check_cell(nb: dict, stem: str) -> list[str]:
    """The first code cell after ``parameters`` (where papermill's overrides land just before it) checks
    them, so plain papermill or Jupyter refuses a misspelt name or a wrong type at once."""
    tagged = [i for i, c in enumerate(nb["cells"]) if "parameters" in c.get("metadata", {}).get("tags", [])]
    after = [c for c in nb["cells"][tagged[0] + 1:] if c["cell_type"] == "code"] if len(tagged) == 1 else []
    if not after or CHECK_CELL.format(stem=stem) not in _src(after[0]):
        return ["the first code cell after the parameters cell must check them:\n" + CHECK_CELL.format(stem=stem)]
    return []


def _opening(nb: dict) -> list[str]:
    first = nb["cells"][0] if nb["cells"] else {"cell_type": "none", "source": ""}
    text = _src(first)
    problems = []
    if first["cell_type"] != "markdown" or not re.match(r"\s*#\s+\S", text):
        return ["the first cell must be markdown opening with a '# Title'"]
    if not re.search(r"\b(Section|Sec\.|Table|Fig\.|Figure)\s*\d", text):
        problems.append("the first cell must name the paper's section, table or figure it follows")
    if not re.search(r"\d\s*(s|sec|seconds?|min|minutes?|h|hours?)\b|check cell after the parameters prints", text):
        problems.append("the first cell must say how long the defaults take (e.g. 'a budget of 6 minutes', or 'the "
                        "check cell after the parameters prints what the defaults took')")
    return problems


def _code(nb: dict, stem: str) -> list[str]:
    code = [_python(_src(c)) for c in nb["cells"] if c["cell_type"] == "code"]
    defs = sum(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
               for src in code for n in ast.walk(ast.parse(src)))
    problems = []
    if defs > MAX_DEFS:
        problems.append(f"{defs} def/class in code cells (at most {MAX_DEFS}): move them into resnet_lib")
    joined = "\n".join(code)
    if "save_results(" not in joined or stem not in joined:
        problems.append(f"no save_results(OUT_DIR, {stem!r}, rows=...) call: the summary table needs it")
    return problems


def _exercises(nb: dict) -> list[str]:
    cells = nb["cells"]
    heads = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
             and re.search(r"^#+\s*Exercises", _src(c), re.M)]
    if not heads:
        return ["no '## Exercises' cell near the end"]
    after = cells[heads[-1] + 1:]
    hidden = [c for c in after if c.get("metadata", {}).get("jupyter", {}).get("source_hidden")]
    answers = sum(_src(c).count("<details") for c in after)
    problems = []
    if not 2 <= answers <= 3:
        problems.append(f"{answers} worked answers after Exercises; give 2 or 3, each in <details>")
    for c in after:
        text = _src(c).strip()
        is_answer = "<details" in text
        if is_answer and c not in hidden:
            problems.append('an answer cell is not collapsed: set metadata {"jupyter": {"source_hidden": true}}')
        if is_answer and not (text.startswith("<details") and text.endswith("</details>")
                              and "<summary>" in text):
            problems.append("an answer cell must be wholly inside <details><summary>Answer</summary> ... </details>")
        if not is_answer and c["cell_type"] != "markdown":
            problems.append("only exercise text and hidden answers may follow the Exercises heading")
    return problems


def convention_problems(path: str | Path) -> list[str]:
    path = Path(path)
    nb = json.loads(path.read_text())
    problems = []
    if nb.get("metadata", {}).get("kernelspec") != KERNELSPEC:
        problems.append(f"metadata.kernelspec must be {KERNELSPEC}")
    return (problems + _outputs(nb, path) + _parameters(nb, path) + _check_cell(nb, path.stem) + _opening(nb)
            + _code(nb, path.stem) + _exercises(nb))


@pytest.mark.parametrize("name", [nb.name for nb in notebooks.list_notebooks()])
def test_notebook_follows_conventions(name):
    path = notebooks.notebook_dir() / name
    assert convention_problems(path) == []


def test_notebook_is_valid_nbformat():
    for path in notebooks.list_notebooks():
        nbformat.validate(nbformat.read(path, as_version=4))


def _planted(tmp_path: Path) -> Path:
    """A notebook breaking every convention once."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    params = nbformat.v4.new_code_cell('EPOCHS = 3\nOUT_DIR = "elsewhere"  # output folder')
    params.metadata["tags"] = ["parameters"]
    ran = nbformat.v4.new_code_cell("def a(): pass\ndef b(): pass\nclass C: pass\nprint(1)",
                                    execution_count=1, outputs=[nbformat.v4.new_output("stream", text="1\n")])
    nb.cells = [nbformat.v4.new_markdown_cell("Some notes"), params, ran,
                nbformat.v4.new_markdown_cell("## Exercises\n1. Why?"),
                nbformat.v4.new_markdown_cell("Answer: because.")]
    path = tmp_path / "99_planted.ipynb"
    nbformat.write(nb, path)
    return path


def test_checks_catch_a_planted_notebook(tmp_path):
    found = "\n".join(convention_problems(_planted(tmp_path)))
    for expected in ("carry outputs", "no comment", "OUT_DIR", "tiny", "must check them", "# Title", "3 def/class",
                     "save_results", "0 worked answers"):
        assert expected in found, f"{expected!r} not reported in:\n{found}"


def test_checks_catch_a_visible_answer(tmp_path):
    path = _planted(tmp_path)
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1] = nbformat.v4.new_markdown_cell("<details><summary>Answer</summary>x</details>")
    nb.cells.append(nbformat.v4.new_markdown_cell("<details><summary>Answer</summary>y</details>",
                                                  metadata={"jupyter": {"source_hidden": True}}))
    nbformat.write(nb, path)
    found = convention_problems(path)
    assert sum("not collapsed" in p for p in found) == 1, found
