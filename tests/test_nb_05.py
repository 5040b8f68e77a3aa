"""Notebook 05 (the ImageNet recipe) runs with its tiny parameters and records what it claims."""
from __future__ import annotations

import pytest

from resnet_lib.base.paper import targets


@pytest.mark.notebook
def test_notebook_05_records_three_test_modes_beside_the_paper(run_tiny, nb_out):
    res = run_tiny("05")
    p = res["parameters"]
    assert (p["NUM_CLASSES"], p["VAL_PER_CLASS"], p["ITERS"], p["EVAL_EVERY"]) == (2, 4, 4, 2)

    # every mode tested on the 8 validation images: errors are multiples of 1/8
    assert set(res["tests"]) == {"center", "10crop", "multiscale"}
    for mode, errs in res["tests"].items():
        assert set(errs) == {"top1"}  # 2 classes: no top-5
        assert 0.0 <= errs["top1"] <= 100.0
        assert errs["top1"] / 12.5 == pytest.approx(round(errs["top1"] / 12.5), abs=1e-4), mode

    # the plateau rule watched held-out training images; the reported validation images steered nothing
    assert res["images"]["schedule_monitor"] == "holdout" and res["images"]["curve_set"] == "holdout"
    assert res["images"]["counts"] == {"train": 28, "holdout": 4, "val": 8}

    # the training curve has one point per check (iterations 2 and 4) and lr drops within the run
    assert res["history"]["iteration"] == [2, 4]
    assert all(0 < d <= 4 for d in res["lr_drops"])

    rows = {r["quantity"]: r for r in res["rows"]}
    assert rows["top-1 error, 10-crop"]["ours"] == pytest.approx(res["tests"]["10crop"]["top1"], abs=0.01)
    assert rows["top-1 error, 10-crop"]["paper"] == targets()["imagenet_table2_top1_10crop"]["ResNet-18"]
    gap = rows["10-crop minus multi-scale top-1"]
    assert gap["paper"] == pytest.approx(24.52 - 21.84)  # ResNet-34 B, Table 3 minus Table 4
    assert gap["ours"] == pytest.approx(res["tests"]["10crop"]["top1"] - res["tests"]["multiscale"]["top1"], abs=0.02)
    for r in res["rows"]:
        assert set(r) == {"quantity", "ours", "paper", "unit", "note"}

    # each test-mode step decided by evidence.compare with binomial intervals on the 8 images
    from resnet_lib.experiments import imagenet_eval as E
    from resnet_lib.experiments import imagenet_table2 as T2
    assert res["mode_verdicts"] == {w: {"status": v.status, "text": v.text}
                                    for w, v in E.mode_claims(res["tests"], 8, 2)}
    assert all(v["status"] == "not shown" for v in res["mode_verdicts"].values())  # 2 classes, 8 images
    # Table 2 comes from the shipped runs, four nets
    assert res["table2"] == T2.table2_rows(T2.load_runs())
    assert {r["net"] for r in res["table2"]} == set(T2.NETS)
    figs = {f.name for f in (nb_out / "05_imagenet_recipe").glob("*.png")}
    assert {"scale_augmentation.png", "train_inputs.png", "pca_lighting.png", "ten_crops.png",
            "tiny_batch.png", "training_curve.png", "fig4_tiny.png"} <= figs
