"""Where data, outputs and the shared Tiny ImageNet subset live.

Every location has a default, an environment variable and (in the functions that use it) an
argument, in increasing order of precedence.
"""
from __future__ import annotations

import os
from pathlib import Path


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The checkout that holds ``pyproject.toml`` for resnet_lib, searched upwards from ``start``
    (default: the current directory, then this file). Falls back to the current directory."""
    candidates = [Path(start or Path.cwd()).resolve(), Path(__file__).resolve().parent]
    for here in candidates:
        for d in (here, *here.parents):
            pp = d / "pyproject.toml"
            if pp.is_file() and 'name = "resnet_lib"' in pp.read_text(errors="ignore"):
                return d
    return Path.cwd()


def _given_or_env(path: str | os.PathLike | None, env: str) -> Path | None:
    """``path`` if given, else the environment variable ``env`` if set, else None."""
    chosen = path or os.environ.get(env)
    return Path(chosen).expanduser() if chosen else None


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """Cache folder for downloaded data: ``path``, else $RESNET_DATA, else ``<project>/data``."""
    return _given_or_env(path, "RESNET_DATA") or project_root() / "data"


def output_dir(path: str | os.PathLike | None = None) -> Path:
    """Where notebooks and runs write results: ``path``, else $RESNET_OUT, else ``<project>/outputs``."""
    return _given_or_env(path, "RESNET_OUT") or project_root() / "outputs"


def tiny_imagenet_dir(path: str | os.PathLike | None = None) -> Path:
    """Tiny ImageNet in its standard layout: ``path``, else $TINY_IMAGENET, else the first of
    ``<project>/data/tiny-imagenet-200`` and ``<project>/../shared/data/tiny-imagenet-200`` that exists."""
    given = _given_or_env(path, "TINY_IMAGENET")
    if given:
        return given
    root = project_root()
    for cand in (root / "data" / "tiny-imagenet-200", root.parent / "shared" / "data" / "tiny-imagenet-200"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(
        "Tiny ImageNet not found. Unzip the official tiny-imagenet-200.zip into "
        f"{root / 'data'} (giving {root / 'data' / 'tiny-imagenet-200'}), or point $TINY_IMAGENET at it.")
