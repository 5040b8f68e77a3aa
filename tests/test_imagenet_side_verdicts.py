"""The verdicts of notebooks 02, 05, 06 and 07 can say no: planted cases where a baseline beats the method,
where an interval covers zero, and where the paper's claim holds."""
from __future__ import annotations

import json

import pytest
import torch

from resnet_lib.experiments import architectures as arch
from resnet_lib.experiments import detection as det
from resnet_lib.experiments import imagenet_eval as E
from resnet_lib.experiments import imagenet_table2 as T2
from resnet_lib.experiments import loc_verdicts as LV
from resnet_lib.experiments import localization as L
from resnet_lib.experiments.evidence import CONTRADICTED, NOT_SHOWN, SHOWN

# ----------------------------------------------------------------------------- 06: boxes without a network

def _loc_errors(ours, whole, const, n=500):
    return {"n": n, "gt_cls_dense": ours, "baseline_gt_cls": whole, "mean_box_gt_cls": const,
            "mean_iou_dense": 0.6, "mean_iou_mean_box": 0.6, "mean_iou_baseline": 0.5, "mean_iou_dense_vs_mean_box": 0.9}


def test_mean_box_is_the_coordinate_mean_and_refuses_no_boxes():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0], [10.0, 20.0, 30.0, 40.0]])
    assert L.mean_box(boxes).tolist() == [5.0, 10.0, 20.0, 30.0]
    with pytest.raises(ValueError, match="N >= 1"):
        L.mean_box(torch.zeros(0, 4))


def test_mean_box_beating_the_network_is_said():
    """The case of the issue: the constant box 26.8%, the network 27.8%, the whole image 40.6%."""
    v = dict(LV.baseline_verdicts(_loc_errors(0.278, 0.406, 0.268)))
    assert v["the whole image"].status == SHOWN
    assert v["the mean training box"].status == NOT_SHOWN  # a 1-point gap the wrong way, inside ±5.6
    text = LV.verdict_markdown(_loc_errors(0.278, 0.406, 0.268))
    assert "does not beat the mean training box" in text and "mostly that one central box" in text
    assert "does not localize beyond a box that needs no network** (not beaten: the mean training box)" in text


def test_mean_box_far_better_is_a_contradiction_and_a_clear_win_is_shown():
    v = dict(LV.baseline_verdicts(_loc_errors(0.40, 0.45, 0.20, n=2000)))
    assert v["the mean training box"].status == CONTRADICTED
    assert "localizes better than the network" in LV.verdict_markdown(_loc_errors(0.40, 0.45, 0.20, n=2000))
    v = dict(LV.baseline_verdicts(_loc_errors(0.10, 0.45, 0.30, n=2000)))
    assert v["the mean training box"].status == SHOWN
    assert "this run localizes: it beats both" in LV.verdict_markdown(_loc_errors(0.10, 0.45, 0.30, n=2000))


def test_interval_shrinks_with_more_images():
    """The same 3-point gap: inside the interval on 200 images, beyond it on 20,000."""
    small = dict(LV.baseline_verdicts(_loc_errors(0.25, 0.40, 0.28, n=200)))["the mean training box"]
    large = dict(LV.baseline_verdicts(_loc_errors(0.25, 0.40, 0.28, n=20_000)))["the mean training box"]
    assert small.status == NOT_SHOWN and large.status == SHOWN


# ----------------------------------------------------------------------------- 07: detection gap

def _dets(scores):
    n = len(scores)
    return {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]] * n), "labels": torch.ones(n, dtype=torch.long),
            "scores": torch.tensor(scores)}


def test_show_threshold_shows_as_many_boxes_as_objects():
    targets = [{"boxes": torch.zeros(2, 4), "labels": torch.ones(2, dtype=torch.long)}]
    weak = [_dets([0.05, 0.12, 0.08, 0.02])]
    assert det.show_threshold(weak, targets) == pytest.approx(0.08)  # 2 objects: the 2nd best score
    assert det.show_threshold([_dets([0.2])], targets) == pytest.approx(0.2)  # fewer detections than objects
    assert det.show_threshold([_dets([])], targets) == 1.0


def test_short_label_keeps_the_head_noun():
    assert det.short_label("European fire salamander") == "salamander"
    assert det.short_label("goldfish") == "goldfish"


def test_bootstrap_se_is_zero_for_perfect_detections_and_positive_otherwise():
    t = [{"boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0]]), "labels": torch.tensor([1])} for _ in range(6)]
    sizes = [(32, 32)] * 6
    perfect = [{"boxes": x["boxes"], "labels": x["labels"], "scores": torch.tensor([0.9])} for x in t]
    assert det.bootstrap_map_se(perfect, t, 1, sizes, n_boot=5)["map_50"] == pytest.approx(0.0)
    half = [perfect[i] if i % 2 else {"boxes": torch.tensor([[22.0, 22.0, 30.0, 30.0]]), "labels": torch.tensor([1]),
                                      "scores": torch.tensor([0.9])} for i in range(6)]
    assert det.bootstrap_map_se(half, t, 1, sizes, n_boot=10)["map_50"] > 1.0
    with pytest.raises(ValueError, match="n_boot"):
        det.bootstrap_map_se(half, t, 1, sizes, n_boot=1)


def test_detection_gap_inside_its_interval_is_not_shown_and_a_reversed_one_is_contradicted():
    maps = {"ResNet-18": {"map_50": 0.12, "map": 0.05}, "plain-18": {"map_50": 0.10, "map": 0.04}}
    ses = {n: {"map_50": 3.0, "map": 2.0} for n in maps}
    v = det.gap_verdicts(maps, ses, "ResNet-18", "plain-18")
    assert v["mAP@0.5"].status == NOT_SHOWN
    maps["plain-18"]["map_50"] = 0.40
    assert det.gap_verdicts(maps, ses, "ResNet-18", "plain-18")["mAP@0.5"].status == CONTRADICTED
    maps["ResNet-18"]["map_50"] = 0.80
    assert det.gap_verdicts(maps, ses, "ResNet-18", "plain-18")["mAP@0.5"].status == SHOWN


def test_paper_detection_table_has_each_column_from_its_own_table():
    rows = {r["benchmark"]: r for r in det.paper_table()}
    assert rows["VOC 2007 test, mAP@.5"]["ResNet-101 mAP"] == 76.4
    assert rows["COCO val, mAP@.5"]["baseline mAP"] == 41.5
    assert rows["ImageNet DET test, mAP"]["ResNet-101 mAP"] == 58.8
    assert sum(r["ResNet-101 mAP"] == 60.5 for r in rows.values()) == 1  # Table 12's val2 number, once


# ----------------------------------------------------------------------------- 05: test modes, Table 2

def test_test_mode_order_needs_a_gap_beyond_the_binomial_interval():
    tests = {"center": {"top1": 52.4}, "10crop": {"top1": 52.8}, "multiscale": {"top1": 56.8}}
    v = dict(E.mode_claims(tests, 250, 10))
    assert v["10 crops beat one centre crop"].status == NOT_SHOWN
    assert v["multi-scale beats 10 crops"].status == NOT_SHOWN  # 4 points on 250 images: inside ±8.9
    tests = {"center": {"top1": 40.0}, "10crop": {"top1": 35.0}, "multiscale": {"top1": 45.0}}
    v = dict(E.mode_claims(tests, 10_000, 10))
    assert v["10 crops beat one centre crop"].status == SHOWN
    assert v["multi-scale beats 10 crops"].status == CONTRADICTED
    near = dict(E.mode_claims({"center": {"top1": 89.0}, "10crop": {"top1": 80.0}, "multiscale": {"top1": 70.0}}, 10_000, 10))
    assert "chance" in near["10 crops beat one centre crop"].text


def test_tests_table_gives_each_error_its_binomial_se():
    rows = E.tests_table({"center": {"top1": 50.0, "top5": 10.0}}, 100)
    assert rows == [{"mode": "center", "top1 err (%)": 50.0, "± SE top1": 5.0, "top5 err (%)": 10.0, "± SE top5": 3.0}]


def _write_run(folder, net, seed, ten, train, num_classes=10):
    d = folder / f"{net}_s{seed}"
    d.mkdir(parents=True)
    kind, depth = net.split("-")
    res = {"spec": {"residual": kind == "ResNet", "depth": int(depth), "num_classes": num_classes},
           "config": {"seed": seed, "iters": 100},
           "history": {"iteration": [50, 100], "train_err": [0.8, train / 100], "test_err": [0.8, 0.6]},
           "final": {"train_err": train / 100, "test_err": 0.6}, "provenance": {"git": "abc", "device": "cpu",
                                                                              "time_utc": f"2026-01-0{seed + 1}"},
           "wall_s": 60.0}
    (d / "result.json").write_text(json.dumps(res))
    (d / "tests.json").write_text(json.dumps({m: {"top1": ten, "top5": 10.0} for m in ("center", "10crop", "multiscale")}))


def _runs(tmp_path, values):
    for net, per_seed in values.items():
        for seed, (ten, train) in enumerate(per_seed):
            _write_run(tmp_path, net, seed, ten, train)
    return T2.load_runs(tmp_path)


def test_table2_degradation_not_shown_when_plain34_is_not_worse(tmp_path):
    runs = _runs(tmp_path, {"plain-18": [(60.0, 50.0), (62.0, 52.0)], "plain-34": [(59.0, 49.0), (61.5, 51.0)],
                            "ResNet-18": [(58.0, 45.0), (59.0, 46.0)], "ResNet-34": [(50.0, 40.0), (51.0, 41.0)]})
    v = dict(T2.claims(runs, "10crop"))
    assert v[T2.CLAIMS[0][2]].status in (NOT_SHOWN, CONTRADICTED)
    assert v[T2.CLAIMS[1][2]].status == SHOWN
    assert "does not train measurably worse" in T2.verdict_markdown(runs)
    rows = {r["net"]: r for r in T2.table2_rows(runs)}
    assert rows["plain-34"]["10-crop top-1 err (%)"] == pytest.approx(60.25)
    assert rows["plain-34"]["paper: 10-crop top-1 err (%)"] == 28.54 and rows["plain-18"]["seeds"] == 2


def test_table2_degradation_shown_when_plain34_is_clearly_worse(tmp_path):
    runs = _runs(tmp_path, {"plain-18": [(50.0, 40.0), (51.0, 41.0)], "plain-34": [(60.0, 50.0), (61.0, 51.0)]})
    v = dict(T2.claims(runs, "10crop"))
    assert v[T2.CLAIMS[0][2]].status == SHOWN
    assert v[T2.CLAIMS[1][2]].status == NOT_SHOWN  # no ResNet runs: "has no result"
    assert "does not train measurably worse" not in T2.verdict_markdown(runs)


def test_table2_one_seed_or_near_chance_is_not_shown(tmp_path):
    runs = _runs(tmp_path, {"plain-18": [(50.0, 40.0)], "plain-34": [(88.0, 87.0), (89.0, 88.0)]})
    assert dict(T2.claims(runs))[T2.CLAIMS[0][2]].status == NOT_SHOWN


def test_load_runs_refuses_an_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="run.sh"):
        T2.load_runs(tmp_path)


# ----------------------------------------------------------------------------- 02: what the shortcuts cost

def test_shortcut_cost_is_computed_per_depth():
    summary = [{"name": "plain-34", "params": 100, "macs": 3.644e9}, {"name": "ResNet-34", "params": 110, "macs": 3.664e9},
               {"name": "ResNet-50", "params": 200, "macs": 3.8e9}]
    rows = arch.shortcut_cost(summary)
    assert [r["depth"] for r in rows] == [34]
    assert rows[0]["ResNet over plain (%)"] == pytest.approx(100 * (3.664 / 3.644 - 1))
    assert "0.55% more" in arch.shortcut_cost_text(rows)
    assert "not measured" in arch.shortcut_cost_text([])


def test_fig3_uses_table1_stage_names_and_draws_vgg19_layer_by_layer():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from resnet_lib.models import drawing
    from resnet_lib.models import imagenet as im
    assert drawing.stage_labels(4) == ["conv2_x", "conv3_x", "conv4_x", "conv5_x"]
    _, ax = plt.subplots()
    drawing.draw_network(im.resnet18(), ax=ax)
    assert {t.get_text() for t in ax.texts} == {"conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x"}
    _, ax = plt.subplots()
    drawing.draw_vgg(im.vgg19(), ax=ax)
    assert len(ax.patches) == 19  # 16 convs and 3 fc layers: "VGG-19"
    plt.close("all")
