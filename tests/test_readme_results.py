"""The result numbers of the README and the docs pages are the files' under results/: each block between
``<!-- results:NAME -->`` markers, in any of ``readme.DOCUMENTS``, is what ``python -m resnet_lib readme``
renders from them."""
from __future__ import annotations

import json

import pytest

from resnet_lib.base.paths import project_root
from resnet_lib.runner import readme

ROOT = project_root()
TEXTS = {name: (ROOT / name).read_text() for name in readme.DOCUMENTS}
TEXT = TEXTS["docs/gpu.md"]


def test_readme_blocks_match_the_result_files():
    stale = readme.stale_documents(ROOT)
    assert not stale, f"blocks {stale} differ from results/: run `python -m resnet_lib readme`"
    assert readme.cli(["--check", "--root", str(ROOT)]) == 0


def test_every_renderer_has_its_block_once():
    names = [m.group(2) for text in TEXTS.values() for m in readme.PATTERN.finditer(text)]
    assert sorted(names) == sorted(readme.BLOCKS)
    assert "scorecard" in [m.group(2) for m in readme.PATTERN.finditer(TEXTS["README.md"])]


def test_a_hand_edited_number_is_caught(tmp_path):
    block = TEXT[TEXT.index("<!-- results:gpu_full_recipe -->"):TEXT.index("<!-- /results:gpu_full_recipe -->")]
    assert "**7.80%**" in block  # the H200 run's test error, as results/h200 records it
    planted = TEXT.replace(block, block.replace("**7.80%**", "**7.60%**"))
    assert readme.stale_blocks(planted, ROOT) == ["gpu_full_recipe"]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "gpu.md").write_text(planted)
    (tmp_path / "results").symlink_to(ROOT / "results")
    assert readme.cli(["--check", "--root", str(tmp_path)]) == 1
    assert readme.stale_documents(tmp_path) == {"docs/gpu.md": ["gpu_full_recipe"]}
    assert readme.cli(["--root", str(tmp_path)]) == 0  # regenerating puts the file's number back
    assert (tmp_path / "docs" / "gpu.md").read_text() == TEXT


def test_the_provenance_table_is_the_runs_own_pieces(tmp_path):
    """results/cifar10/README.md's table follows the run records: a planted run continued on a second machine
    shows both stretches with their device, precision and code; a run without pieces shows its provenance."""
    runs = tmp_path / "results" / "cifar10" / "runs"
    runs.mkdir(parents=True)
    piece = {"torch": "2.11", "precision": "fp32", "wall_s": 10.0}
    (runs / "main__a.json").write_text(json.dumps({
        "name": "ResNet-8", "seed": 2, "config": {"iters": 100}, "precision": "fp32",
        "provenance": {"git": "abc1234", "time_utc": "2099-01-01T00:00:00Z"},
        "pieces": [{**piece, "device": "GPU-X", "git": "abc1234", "start": 0, "end": 40, "since_utc": "2098"},
                   {**piece, "device": "CPU-Y", "git": "def5678", "start": 40, "end": 100, "since_utc": "2099"}]}))
    (runs / "main__b.json").write_text(json.dumps({
        "name": "plain-8", "seed": 1, "config": {"iters": 100}, "precision": "bf16 autocast", "pieces": [],
        "provenance": {"git": "0123abc", "device": "GPU-Z", "torch": "2.9", "time_utc": "2097"}}))
    from resnet_lib.experiments.shipped_provenance import runs_table
    table = runs_table(tmp_path)
    rows = [r for r in table.splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert len(rows) == 3
    assert "| 0-40 | GPU-X | 2.11 | fp32 | abc1234 | 2098 |" in rows[0] and "[ResNet-8 seed 2]" in rows[0]
    assert "| 40-100 | CPU-Y | 2.11 | fp32 | def5678 | 2099 |" in rows[1] and rows[1].endswith("2099-01-01T00:00:00Z |")
    assert "| 0-100 | GPU-Z | 2.9 | bf16 autocast | 0123abc | not recorded |" in rows[2]
    shipped = TEXTS["results/cifar10/README.md"]
    assert "Session of" not in shipped  # no diary: what trained where is generated
    for p in sorted((ROOT / "results/cifar10/runs").glob("*.json")):
        assert f"(runs/{p.name})" in shipped


def test_an_unknown_block_is_refused():
    with pytest.raises(ValueError, match="no renderer"):
        readme.render("<!-- results:nope -->\nx\n<!-- /results:nope -->", ROOT)


def test_gpu_checks_and_lanes_bench_render_what_a_new_gpu_run_writes(tmp_path):
    """The blocks a GPU session updates, from planted files: each GPU's bench run is a section, its lanes row a
    table; for each CUDA check the newest log that ran it decides, on whichever GPU; a check no log mentions
    is 'not run yet', and one named in a failure 'did not pass' even when other checks of that log passed."""
    import shutil
    for sub in ("results/bench", "results/h200", "results/h100"):
        (tmp_path / sub).mkdir(parents=True)
    shutil.copy(ROOT / "results/h200/full_recipe_resnet20.log", tmp_path / "results/h200")
    for gpu in ("h200", "h100"):
        shutil.copy(ROOT / "results/bench/h200_gpu_campaign.provenance.json",
                    tmp_path / f"results/bench/{gpu}_gpu_campaign.provenance.json")
    rows = (ROOT / "results/bench/h200_gpu_campaign.jsonl").read_text()
    lanes = {"impl": "lanes", "groups": [{"depths": [20, 110], "ms_per_round": 10.0, "ms_one_after_another": 15.6,
                                          "speedup": 1.56}]}
    (tmp_path / "results/bench/h200_gpu_campaign.jsonl").write_text(rows)
    (tmp_path / "results/bench/h100_gpu_campaign.jsonl").write_text(rows + json.dumps(lanes) + "\n")
    text = readme.gpu_campaign_bench(tmp_path)
    assert text.count("| naive reference |") == 2 and "`results/bench/h100_gpu_campaign.jsonl`" in text
    assert text.count("| ResNet-20 + ResNet-110 | 10.00 | 15.60 | 1.56x |") == 1
    older, newer = tmp_path / "results/h200/cuda_tests_2099-01-01.log", tmp_path / "results/h100/cuda_tests_2099-01-01T0900.log"
    older.write_text("graph step == eager step: ok\n")
    said = readme.gpu_checks(tmp_path)
    assert "the graph step equals the eager step: passed (`results/h200/cuda_tests_2099-01-01.log`)" in said
    assert said.count("not run on a GPU yet") == 4
    newer.write_text("graph step == eager step: ok\nTraceback (most recent call last):\n  File ..., in "
                     "test_fused_job_on_the_gpu_graphed_and_resumed_matches_eager\nFAILED: "
                     "test_fused_job_on_the_gpu_graphed_and_resumed_matches_eager\n")
    said = readme.gpu_checks(tmp_path)
    assert "matches it trained eagerly: **did not pass**" in said and said.count("not run on a GPU yet") == 3
    assert "the graph step equals the eager step: passed (`results/h100/cuda_tests_2099-01-01T0900.log`)" in said
    older.write_text("fused job graphed and resumed == fused job eager: ok\n")  # an older pass does not outvote
    assert "matches it trained eagerly: **did not pass**" in readme.gpu_checks(tmp_path)
