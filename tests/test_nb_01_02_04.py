"""Notebooks 01, 02 and 04 end to end with their tiny parameters, asserting on what they saved."""
from __future__ import annotations

import json

import numpy as np
import pytest

from resnet_lib.experiments import responses as rs
from resnet_lib.runner import notebooks


def _rows(res: dict) -> dict:
    return {r["quantity"]: r for r in res["rows"]}


@pytest.mark.notebook
def test_notebook_01_tiny(run_tiny, nb_out):
    res = run_tiny("01_residual_learning")
    rows = _rows(res)
    assert rows["max |block(x) - x| with zero branch"]["ours"] == 0.0
    assert [(r["block"], r["depth"]) for r in res["degradation"]] == [("plain", 4), ("residual", 4),
                                                                       ("plain", 10), ("residual", 10)]
    assert all(len(r["curve"]) == 2 for r in res["degradation"])
    # two seeds per stack, summarised as mean and std; the verdict goes through evidence.compare over them
    assert all(r["seeds"] == 2 and r["std over seeds"] is not None for r in res["degradation_summary"])
    verdicts = res["degradation_verdicts"]
    assert [v["claim"].split(" ")[0] for v in verdicts] == ["plain-10", "residual-10", "residual-10"]
    # 2 epochs on 300 images: stacks near chance are refused, whatever else the numbers say
    mean = {f"{r['block']}-{r['depth']}": r["train error % (mean)"] for r in res["degradation_summary"]}
    for v in verdicts:
        names = [v["claim"].split(" ")[0], v["claim"].split(" ")[3]]
        if any(mean[n] >= 85 for n in names):
            assert v["status"] == "not shown" and "chance" in v["text"]
    assert {r["depth"] for r in res["flow"]} == {8, 14}
    assert len(res["flow"][0]["grad_norm"]) == 7  # 6n+2 = 8 layers: 7 3x3 convs
    assert [h["gate_bias"] for h in res["highway"]] == [-3.0, 3.0]
    assert res["highway"][0]["gate_init"] < 0.1 and res["highway"][1]["gate_init"] > 0.9
    # the highway stacks run over SEEDS too, and each expectation is checked against the spread over them
    assert [r["seeds"] for r in res["highway_summary"]] == [2, 2]  # HIGHWAY_DEPTH 6 is not among DEPTHS
    assert len(res["highway_checks"]) == 2 and all("was not trained here" in c["text"] for c in res["highway_checks"])
    assert 0.45 < rows["highway gate parameters / residual block parameters"]["ours"] < 0.55
    assert res["multigrid"]["two_grid"][-1] < 1e-8 < res["multigrid"]["jacobi"][-1]
    for fig in ("degradation", "identity", "flow_at_init", "highway", "multigrid"):
        assert (nb_out / "01_residual_learning" / f"{fig}.png").stat().st_size > 5_000


@pytest.mark.notebook
def test_notebook_02_tiny(run_tiny, nb_out):
    res = run_tiny("02_architectures")
    rows = _rows(res)
    for name, paper in (("ResNet-18", 1.8), ("ResNet-50", 3.8), ("VGG-19", 19.6)):
        r = rows[f"FLOPs {name}"]
        assert r["paper"] == pytest.approx(paper)
        assert abs(r["ours"] / paper - 1) < 0.02
    assert rows["FLOPs plain-18"]["ours"] == pytest.approx(1.795, abs=1e-3)
    assert rows["ResNets with torchvision's parameter count and strict state_dict load"]["ours"] == "1/1"
    assert res["parity"][0]["max_abs_output_diff"] < 1e-4
    assert rows["params CIFAR ResNet-56"]["ours"] == 853_018 and rows["params CIFAR ResNet-56"]["paper"] == "0.85M"
    assert res["stride_placement"][0]["stride on 3x3 (x10^9)"] > res["stride_placement"][0]["stride on 1x1 (x10^9)"]
    # what option B's projections add to the 18-layer plain net, computed (the tiny DEPTHS have no plain-34)
    [cost] = res["shortcut_cost"]
    assert cost["depth"] == 18 and cost["ResNet over plain (%)"] == pytest.approx(
        100 * (rows["FLOPs ResNet-18"]["ours"] / rows["FLOPs plain-18"]["ours"] - 1), abs=0.1)
    table3 = {r["model"]: r for r in res["table3"]}
    assert table3["ResNet-34 A"]["paper top-1 err (%)"] == 25.03 and table3["ResNet-34 C"]["paper top-5 err (%)"] == 7.4
    for fig in ("blocks", "networks_34"):
        assert (nb_out / "02_architectures" / f"{fig}.png").stat().st_size > 5_000


@pytest.mark.notebook
def test_notebook_04_tiny_trains_briefly(run_tiny, nb_out):
    res = run_tiny("04_layer_responses")
    assert set(res["stds"]) == {"plain-8", "ResNet-8", "plain-14", "ResNet-14"}
    assert len(res["stds"]["ResNet-8"]) == 7 and len(res["stds"]["plain-14"]) == 13
    assert all(n["origin"] == "trained here (brief run)" and n["iters"] == 3 for n in res["nets"].values())
    # 3 iterations learn nothing: every claim on these nets is refused, and says why
    assert res["verdicts"] and all(v["status"] == "not shown" for v in res["verdicts"])
    assert all("chance" in v["text"] or "diverged" in v["text"] for v in res["verdicts"])
    # the fully trained shipped nets decide Fig. 7's claims, read from their own medians
    paper = res["paper_nets"]
    assert all(n["iters"] == 64_000 and n["train_err_pct"] < 20 for n in paper.values())
    for v in res["paper_verdicts"]:
        better, worse = v["claim"].split("'")[0], v["claim"].split("(")[-1].rstrip(")")
        assert (v["status"] == "shown") == (paper[worse]["median"] - paper[better]["median"] >
                                            2 * np.hypot(paper[better]["se"], paper[worse]["se"]))
    for fig in ("fig7_responses", "fig7_paper_scale"):
        assert (nb_out / "04_layer_responses" / f"{fig}.png").stat().st_size > 5_000


@pytest.mark.notebook
def test_notebook_04_reuses_notebook_03_runs(tmp_path):
    runs = tmp_path / "03_cifar10_plain_vs_residual" / "runs"
    for residual in (False, True):
        rs.train_brief(8, residual, runs, iters=4, batch_size=16, subset=100, device="cpu", progress=False)
    nb = notebooks.find_notebook("04_layer_responses")
    notebooks.run_notebook(nb, tmp_path, params={"USE_STORED": True, "DEPTHS": [8]}, tiny=True, progress=False)
    res = json.loads((tmp_path / "04_layer_responses" / "results.json").read_text())
    assert all(n["origin"] == "notebook 03 (short run)" and n["iters"] == 4 for n in res["nets"].values())
    assert not (tmp_path / "04_layer_responses" / "runs").exists()  # nothing trained here
