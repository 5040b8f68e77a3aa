"""A notebook's parameters: read from its ``parameters`` cell, and checked in one place.

Both ways of running a notebook refuse an unknown parameter name or a value of the wrong type with the
same message: the project's runner before the kernel starts (:func:`check_parameters`), and plain
papermill or Jupyter in the notebook's own check cell, the first code cell after ``parameters`` (papermill
injects its overrides between the two)::

    from resnet_lib.runner.params import check_notebook_parameters
    check_notebook_parameters(globals(), "03_cifar10_plain_vs_residual")

Papermill alone only warns about an unknown name and then runs for minutes with the default; a wrong type
(``-p EVALS abc``) fails deep in the library with a message about something else.

The types come from each parameter's default: a value must have its default's type, except that an int
is accepted where a float is expected, a tuple where a list is, and anything where the default is None;
the items of a list are checked against the default's items (``DEPTHS = [20, 56]`` takes ints).
"""
from __future__ import annotations

import ast
import difflib
import json
import os
from pathlib import Path

from ..base.errors import ParameterError
from ..base.paths import project_root


def _cells(path: Path) -> list[dict]:
    try:
        return json.loads(Path(path).read_text())["cells"]
    except (OSError, ValueError, KeyError) as e:
        raise ParameterError(f"cannot read the notebook {path} ({e}); pass the path of a .ipynb file") from None


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def parameters_cell(cells: list[dict]) -> dict | None:
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) > 1:
        raise ValueError("more than one cell is tagged 'parameters'; papermill needs exactly one")
    return tagged[0] if tagged else None


def read_parameters(path: str | os.PathLike) -> dict:
    """``{name: default}`` from the notebook's ``parameters`` cell. Raises if the cell holds anything but
    ``NAME = literal`` assignments (comments are fine)."""
    cell = parameters_cell(_cells(Path(path)))
    if cell is None:
        raise ValueError(f"{path}: no cell is tagged 'parameters'")
    out = {}
    for node in ast.parse(_source(cell)).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{path}: the parameters cell must hold only NAME = literal lines, found: "
                             f"{ast.unparse(node)!r}")
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise ValueError(f"{path}: parameter {node.targets[0].id} is not a literal: {ast.unparse(node.value)}") from None
    return out


def type_ok(default, value) -> bool:
    """Whether ``value`` may replace ``default`` (see the module's docstring for the rules)."""
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and (not default or all(any(type_ok(d, v) for d in default)
                                                                         for v in value))
    return isinstance(value, type(default))


def _how_to_pass(name: str, default) -> str:
    """The papermill option that gives ``name`` a value of its default's type."""
    if isinstance(default, (list, tuple, dict)):
        return f"-y \"{name}: {json.dumps(default)}\" (YAML, so the list keeps its item types)"
    if isinstance(default, bool):
        return f"-p {name} {default} (True or False)"
    if isinstance(default, (int, float)):
        return f"-p {name} {default} (a number, no quotes)"
    return f"-p {name} {json.dumps(default)}"


def parameter_problems(known: dict, params: dict) -> list[str]:
    """One line per unknown name or wrong type in ``params``, given the defaults ``known``."""
    problems = []
    for name, value in params.items():
        if name not in known:
            close = [k for k in known if k.lower() == name.lower()] or difflib.get_close_matches(name, known, 1, 0.75)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"unknown parameter {name!r}{hint}")
        elif not type_ok(known[name], value):
            default = known[name]
            what = type(default).__name__ + (f" of {type(default[0]).__name__}" if isinstance(default, list)
                                             and default and isinstance(value, (list, tuple)) else "")
            problems.append(f"parameter {name} should be {what} like its default {default!r}, got "
                            f"{type(value).__name__} {value!r}; pass it as {_how_to_pass(name, default)}")
    return problems


def _report(notebook: str, known: dict, problems: list[str]) -> str:
    return (f"{notebook}: " + "; ".join(problems) +
            f". Its parameters are: {', '.join(f'{k}={v!r}' for k, v in known.items())}")


def check_parameters(path: str | os.PathLike, params: dict) -> None:
    """The runner's check, before a notebook starts: refuse unknown names and wrong types in ``params``."""
    known = read_parameters(path)
    problems = parameter_problems(known, params)
    if problems:
        raise ParameterError(_report(Path(path).name, known, problems))


def find_notebook_file(name: str) -> Path:
    """The notebook ``name`` (a stem like ``"03_cifar10_plain_vs_residual"`` or a path): first in the
    current folder (Jupyter and papermill run a notebook in its own folder), then in ``notebooks/``."""
    p = Path(name if name.endswith(".ipynb") else f"{name}.ipynb")
    for candidate in (p, project_root() / "notebooks" / p.name):
        if candidate.is_file():
            return candidate
    raise ParameterError(f"cannot find the notebook {p.name} in {Path.cwd()} or {project_root() / 'notebooks'}; "
                         "run it from its own folder, or pass its path to check_notebook_parameters")


def _assigned_names(cells: list[dict]) -> set[str]:
    """Names that the notebook's own code cells assign (constants of later cells, not parameters)."""
    names = set()
    for cell in cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.get("cell_type") != "code" or "parameters" in tags or "injected-parameters" in tags:
            continue
        src = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in _source(cell).splitlines())
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                names.add(n.id)
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in n.names}
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(n.name)
    return names


def check_notebook_parameters(namespace: dict, notebook: str) -> None:
    """The notebook's own check cell: ``check_notebook_parameters(globals(), "<notebook stem>")``.

    Every UPPER_CASE global (the parameters cell's and whatever papermill injected) must be a parameter
    of the notebook's ``parameters`` cell and have its default's type; a lower-case spelling of a
    parameter (``-p evals 4``) is refused too. Names that later cells assign are left alone, so running
    the notebook again in Jupyter passes."""
    path = find_notebook_file(notebook)
    cells = _cells(path)
    known = read_parameters(path)
    later = _assigned_names(cells) - set(known)
    given = {k: v for k, v in namespace.items() if k in known or (
        k not in later and not k.startswith("_") and (k.isupper() or k.upper() in known))}
    problems = [f"parameter {k} is not defined: run the parameters cell first" for k in known if k not in namespace]
    problems += parameter_problems(known, given)
    unknown = [i for i, p in enumerate(problems) if p.startswith("unknown")]
    if unknown:  # in Jupyter, a parameter just added to the cell but not saved is unknown to the file
        problems[unknown[-1]] += " (a parameter you added to the parameters cell counts once the notebook is saved)"
    if problems:
        raise ParameterError(_report(path.name, known, problems))
    from .timings import expected_text
    if all(namespace[k] == v for k, v in known.items() if not k.endswith("_DIR")):  # timings are of the defaults
        print(expected_text(path.stem, known) or "parameters: ok")
    else:
        print("parameters: ok (not the defaults; the times measured for the defaults do not apply)")
