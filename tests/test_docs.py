"""The README is a front door (short, every link resolves) and nothing it used to tell is lost: each section
it had before issue #28 is a heading of a docs page that the README links to."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from resnet_lib.base.paths import project_root

ROOT = project_root()
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "results").rglob("README.md"))]
MOVED = [  # the README's sections before issue #28, each now a heading in docs/
    "The library", "What each notebook shows", "CIFAR-10, plain versus residual nets",
    "Concepts and architectures", "The ImageNet recipe and training across machines", "Localization and detection",
    "The data", "Speed and the CPU paths", "On a GPU: the paper's full recipe",
    "The paper's scale: a resumable campaign", "Using the notebooks", "In JupyterLab",
    "Batch runs and sweeps", "Why committed notebooks carry no outputs", "Tests", "Bad input", "The training engine",
    "The notebooks' times"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path: Path) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", path.read_text(), re.M)]


def broken_links(page: Path) -> list[str]:
    """Relative links of ``page`` whose file is missing, or whose #fragment names no heading of a Markdown file."""
    bad = []
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, frag = target.partition("#")
        dest = (page.parent / unquote(path)).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif frag and dest.suffix == ".md" and frag not in {slug(h) for h in headings(dest)}:
            bad.append(f"{target}: no such heading")
    return bad


def test_the_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_relative_link_resolves():
    problems = {p.relative_to(ROOT).as_posix(): broken_links(p) for p in PAGES}
    assert not {k: v for k, v in problems.items() if v}


def test_the_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "a.md"
    (tmp_path / "b.md").write_text("# Title\n\n## The training engine\n")
    page.write_text("[ok](b.md#the-training-engine) [gone](c.md) [frag](b.md#nope) [web](https://x.org/y)\n"
                    "```\n[in code](nowhere.md)\n```\n")
    assert broken_links(page) == ["c.md: no such file", "b.md#nope: no such heading"]


def test_nothing_the_readme_told_is_lost():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in LINK.findall(README.read_text())}
    docs = [p for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() in linked]
    assert len(docs) == len(list((ROOT / "docs").glob("*.md"))), "a docs page is not linked from the README"
    found = [h for p in docs for h in headings(p)]
    missing = [m for m in MOVED if not any(h.startswith(m) for h in found)]
    assert not missing, f"sections no docs page has: {missing}"
