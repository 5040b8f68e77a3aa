"""The package's layers (resnet_lib/__init__.py): every import goes from a higher layer to a lower one
or within a layer, so the dependency graph reads bottom-up and has no cycle between layers."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "resnet_lib"
LAYERS = ["base", "data", "models", "engine", "experiments", "runner"]


def _imports(path: Path, package: Path = PACKAGE) -> list[str]:
    """Dotted resnet_lib modules that ``path`` imports (relative imports resolved)."""
    pkg = path.relative_to(package.parent).with_suffix("").parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[: len(pkg) - node.level + 1])
                mod = ".".join(base + ([node.module] if node.module else []))
                out += [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
            elif node.module and node.module.startswith("resnet_lib"):
                out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("resnet_lib")]
    return out


def layer_of(dotted: str) -> int | None:
    parts = dotted.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE)


def test_every_module_lives_in_a_layer():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert not loose, f"modules outside the layers: {loose}; move them into one of {LAYERS}"
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()) == sorted(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    here = layer_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    up = [m for m in _imports(path) if (layer_of(m) or 0) > here]
    assert not up, f"{path.relative_to(PACKAGE)} ({LAYERS[here]}) imports a higher layer: {up}"


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check above can fail: a planted engine module that imports the runner is caught."""
    fake = tmp_path / "resnet_lib" / "engine"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from ..runner import notebooks\nfrom resnet_lib.experiments import cifar_runs\n")
    mods = _imports(fake / "bad.py", tmp_path / "resnet_lib")
    assert [layer_of(m) for m in mods] == [5, 4]
