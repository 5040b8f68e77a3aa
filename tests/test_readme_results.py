"""The README's result numbers are the files' under results/: each block between
``<!-- results:NAME -->`` markers is what ``python -m resnet_lib readme`` renders from them."""
from __future__ import annotations

import pytest

from resnet_lib.base.paths import project_root
from resnet_lib.runner import readme

ROOT = project_root()
TEXT = (ROOT / "README.md").read_text()


def test_readme_blocks_match_the_result_files():
    stale = readme.stale_blocks(TEXT, ROOT)
    assert not stale, f"README blocks {stale} differ from results/: run `python -m resnet_lib readme`"
    assert readme.cli(["--check", "--root", str(ROOT)]) == 0


def test_every_renderer_has_its_block_in_the_readme():
    names = [m.group(2) for m in readme.PATTERN.finditer(TEXT)]
    assert sorted(names) == sorted(readme.BLOCKS)


def test_a_hand_edited_number_is_caught(tmp_path):
    block = TEXT[TEXT.index("<!-- results:gpu_full_recipe -->"):TEXT.index("<!-- /results:gpu_full_recipe -->")]
    assert "**7.80%**" in block  # the H200 run's test error, as results/h200 records it
    planted = TEXT.replace(block, block.replace("**7.80%**", "**7.60%**"))
    assert readme.stale_blocks(planted, ROOT) == ["gpu_full_recipe"]
    (tmp_path / "README.md").write_text(planted)
    (tmp_path / "results").symlink_to(ROOT / "results")
    assert readme.cli(["--check", "--root", str(tmp_path)]) == 1
    assert readme.cli(["--root", str(tmp_path)]) == 0  # regenerating puts the file's number back
    assert (tmp_path / "README.md").read_text() == TEXT


def test_an_unknown_block_is_refused():
    with pytest.raises(ValueError, match="no renderer"):
        readme.render("<!-- results:nope -->\nx\n<!-- /results:nope -->", ROOT)
