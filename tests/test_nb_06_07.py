"""Notebooks 06 (localization) and 07 (detection) end to end with tiny parameters: under papermill (asserting
on the results they save) and under nbval; and their bad-parameter paths."""
from __future__ import annotations

import subprocess
import sys

import pytest

from resnet_lib.data import boxes as B
from resnet_lib.experiments import detection as det
from resnet_lib.experiments import loc_verdicts as LV
from resnet_lib.experiments import localization as L
from resnet_lib.runner import notebooks

NB06, NB07 = "06_localization", "07_detection"


@pytest.mark.notebook
def test_notebook_06_tiny_run_saves_errors_beside_the_paper(run_tiny, nb_out):
    res = run_tiny(NB06)
    tiny = notebooks.tiny_parameters(notebooks.find_notebook(NB06))
    err = res["errors"]
    for k in ("gt_cls_dense", "gt_cls_1crop", "gt_cls_dense_top_anchor", "top5_dense", "baseline_gt_cls", "cls_top5_err"):
        assert 0.0 <= err[k] <= 1.0, k
    assert err["top_k"] == min(5, tiny["NUM_CLASSES"])
    assert err["top5_dense"] >= err["gt_cls_dense"] - 1e-9  # a top-k guess needs the true class's (same) box
    # the baseline, recomputed here from the annotation files, is what the notebook reports
    _, val = B.load_box_sets(tiny["NUM_CLASSES"], tiny["TRAIN_PER_CLASS"], tiny["VAL_PER_CLASS"])
    whole = L.whole_image_boxes(len(val), 64, 64)
    assert err["baseline_gt_cls"] == pytest.approx(L.loc_error(val.labels, whole, val.labels, val.boxes))
    assert len(res["fine_tune_history"]["loss"]) == tiny["LOC_EPOCHS"]
    rows = {r["quantity"]: r for r in res["rows"]}
    dense = rows["LOC error, true class given, dense (Table 13)"]
    assert dense["paper"] == 11.7 and dense["ours"] == pytest.approx(100 * err["gt_cls_dense"], abs=0.01)
    assert rows["LOC error, true class given, whole-image box (baseline)"]["paper"] is None
    # the constant baseline: the mean of the training boxes, on every validation image
    train, _ = B.load_box_sets(tiny["NUM_CLASSES"], tiny["TRAIN_PER_CLASS"], tiny["VAL_PER_CLASS"])
    const = L.mean_box(train.boxes)[None].expand(len(val), 4)
    assert err["mean_box_gt_cls"] == pytest.approx(L.loc_error(val.labels, const, val.labels, val.boxes))
    assert err["mean_box"] == pytest.approx(L.mean_box(train.boxes).tolist())
    # the verdicts saved are evidence.compare's on the saved errors
    assert res["verdicts"] == {name: {"status": v.status, "text": v.text} for name, v in LV.baseline_verdicts(err)}
    for png in ("train_boxes.png", "anchors.png", "fine_tune_loss.png", "val_predictions.png"):
        assert (nb_out / NB06 / png).stat().st_size > 5_000, png


@pytest.mark.notebook
def test_notebook_07_tiny_run_saves_both_backbones_maps(run_tiny, nb_out):
    res = run_tiny(NB07)
    tiny = notebooks.tiny_parameters(notebooks.find_notebook(NB07))
    assert set(res["maps"]) == {"ResNet-18", "plain-18"}
    for m in res["maps"].values():
        assert 0.0 <= m["map"] <= m["map_50"] <= 1.0
        assert len(m["per_class_ap50"]) == tiny["NUM_CLASSES"]
    for h in res["fine_tune_history"].values():
        assert len(h["loss"]) == tiny["DET_EPOCHS"] and all(v > 0 for v in h["loss"])
    rows = {r["quantity"]: r for r in res["rows"]}
    assert rows["mAP@0.5, ResNet-18 backbone (Table 8: ResNet-101)"]["paper"] == 48.4
    assert rows["mAP@[.5,.95], plain-18 backbone (Table 8: VGG-16)"]["paper"] == 21.2
    gain = rows["mAP@0.5 gain, ResNet-18 over plain-18"]["ours"]
    assert gain == pytest.approx(100 * (res["maps"]["ResNet-18"]["map_50"] - res["maps"]["plain-18"]["map_50"]), abs=0.01)
    # one reading of the gap: the saved verdicts are evidence.compare's on the saved mAPs and bootstrap errors
    assert set(res["map_se"]) == {"ResNet-18", "plain-18"} and res["parameters"]["BOOTSTRAP"] == tiny["BOOTSTRAP"]
    recomputed = det.gap_verdicts(res["maps"], res["map_se"], "ResNet-18", "plain-18")
    assert res["verdicts"] == {m: {"status": v.status, "text": v.text} for m, v in recomputed.items()}
    assert set(res["show_threshold"]) == {"ResNet-18", "plain-18"}
    for png in ("train_scenes.png", "fine_tune_loss.png", "per_class_ap.png", "detections.png"):
        assert (nb_out / NB07 / png).stat().st_size > 5_000, png


@pytest.mark.notebook
def test_notebooks_06_07_pass_nbval(tmp_path):
    """Every cell runs under nbval (as `make test` does for all notebooks), with tiny parameters."""
    from papermill.iorw import load_notebook_node, write_ipynb
    from papermill.parameterize import parameterize_notebook
    paths = []
    for name in (NB06, NB07):
        nb = notebooks.find_notebook(name)
        params = {**notebooks.tiny_parameters(nb), "OUT_DIR": str(tmp_path / "outputs")}
        dest = tmp_path / nb.name
        write_ipynb(parameterize_notebook(load_notebook_node(str(nb)), params), str(dest))
        paths.append(str(dest))
    run = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", *paths],
                         cwd=notebooks.notebook_dir(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


@pytest.mark.notebook
def test_bad_class_count_stops_notebook_06_early(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match="num_classes must be between 1 and"):
        notebooks.run_notebook(notebooks.find_notebook(NB06), tmp_path, params={"NUM_CLASSES": 0}, tiny=True,
                               progress=False)


@pytest.mark.notebook
def test_missing_voc_stops_notebook_07_early(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match="VOC2007 is missing"):
        notebooks.run_notebook(notebooks.find_notebook(NB07), tmp_path, params={"VOC_ROOT": str(tmp_path / "voc")},
                               tiny=True, progress=False)


def test_wrong_parameter_type_is_refused_before_starting(tmp_path):
    with pytest.raises(ValueError, match="LOC_EPOCHS should be int"):
        notebooks.run_notebook(notebooks.find_notebook(NB06), tmp_path, params={"LOC_EPOCHS": "many"})
    with pytest.raises(ValueError, match="unknown parameter 'EPOCHS'"):
        notebooks.run_notebook(notebooks.find_notebook(NB07), tmp_path, params={"EPOCHS": 3})
