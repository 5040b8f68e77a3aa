"""The scorecard (``experiments.scorecard``) follows the results: planted run records and notebook outputs
turn each claim from "not yet run" to "partly", "reproduced" or "not reproduced", and a file it cannot read
leaves the claim "not yet run" instead of breaking the card."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from resnet_lib.base.paths import project_root
from resnet_lib.experiments import scorecard as sc

ROOT = project_root()


def _run(root: Path, name: str, seed: int, train: float, test: float, *, iters: int = 64_000, group: str = "main",
         shortcut: str = "A", folder: str = "results/cifar10/runs") -> None:
    kind, depth = name.split("-")
    rec = {"name": name, "seed": seed, "spec": {"depth": int(depth), "residual": kind == "ResNet", "shortcut": shortcut},
           "config": {"iters": iters, "seed": seed}, "final": {"train_err": train / 100, "test_err": test / 100}}
    path = root / folder / f"{group}__{name}{shortcut}_it{iters}_s{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def _status(root: Path, key: str, outputs: Path | None = None) -> sc.Claim:
    return next(c for c in sc.scorecard(root, outputs) if c.key == key)


def _outputs(out: Path, stem: str, **data) -> None:
    (out / stem).mkdir(parents=True, exist_ok=True)
    (out / stem / "results.json").write_text(json.dumps({"name": stem, "rows": [], **data}))


def test_an_empty_checkout_is_not_yet_run_or_beyond(tmp_path):
    card = sc.scorecard(tmp_path, tmp_path / "outputs")
    assert {c.status for c in card} == {sc.NOT_YET, sc.BEYOND}
    assert _status(tmp_path, "shortcuts").status == sc.BEYOND and "ImageNet-1k" in _status(tmp_path, "shortcuts").said


def test_cifar_degradation_follows_the_runs(tmp_path):
    assert _status(tmp_path, "degradation_cifar").status == sc.NOT_YET
    for name, train in (("plain-20", 7.7), ("plain-56", 30.7)):  # the quarter schedule, one seed each
        _run(tmp_path, name, 0, train, train, iters=16_000, folder="results/h200", group="q")
    c = _status(tmp_path, "degradation_cifar")
    assert c.status == sc.PARTLY and "one seed" in c.said and c.said.startswith("a quarter of the recipe")
    for seed, (p20, p56) in enumerate([(1.2, 6.0), (1.4, 6.5), (1.1, 5.8)], 1):  # full recipe, three seeds
        _run(tmp_path, "plain-20", seed, p20, 10)
        _run(tmp_path, "plain-56", seed, p56, 12)
    c = _status(tmp_path, "degradation_cifar")
    assert c.status == sc.REPRODUCED and c.said.startswith("paper's recipe") and "±" in c.said
    assert [e.status for e in c.evidence] == [sc.REPRODUCED, sc.PARTLY]  # the smaller scale is still listed
    for seed in (1, 2, 3):  # plain-56 now trains better: the paper's claim points the other way
        _run(tmp_path, "plain-56", seed, 0.5 + 0.1 * seed, 12)
    assert _status(tmp_path, "degradation_cifar").status == sc.NOT_REPRODUCED
    for seed in (1, 2, 3):  # a plain-56 that learned nothing does not count
        _run(tmp_path, "plain-56", seed, 89.0, 89.5)
    c = _status(tmp_path, "degradation_cifar")
    assert c.status == sc.NOT_REPRODUCED and "chance" in c.said


@pytest.mark.parametrize("errs, status", [([], sc.NOT_YET), ([6.9], sc.PARTLY), ([8.4], sc.NOT_REPRODUCED),
                                          ([6.9, 7.1, 7.0], sc.REPRODUCED), ([6.5, 6.6, 6.55], sc.REPRODUCED),
                                          ([7.6, 7.7, 7.65], sc.NOT_REPRODUCED)])
def test_table6_per_depth(tmp_path, errs, status):
    """ResNet-56 (paper 6.97 %): one seed is partly at most; three seeds within the interval or below it
    reproduce it; a gap beyond the interval does not."""
    for seed, e in enumerate(errs, 1):
        _run(tmp_path, "ResNet-56", seed, 1.0, e)
    c = _status(tmp_path, "table6_56")
    assert c.status == status, c.said
    if errs:
        assert f"n={len(errs)}" in c.said and "6.97" in c.said


def test_deeper_resnets_and_shortcuts(tmp_path):
    for seed in (1, 2, 3):
        for depth, e in ((20, 8.7), (32, 7.5), (44, 7.2)):
            _run(tmp_path, f"ResNet-{depth}", seed, 1, e + 0.05 * seed)
    assert _status(tmp_path, "deeper_resnets_cifar").status == sc.REPRODUCED
    for seed in (1, 2, 3):  # ResNet-44 now worse than ResNet-32: one step of two fails
        _run(tmp_path, "ResNet-44", seed, 1, 8.0 + 0.05 * seed)
    assert _status(tmp_path, "deeper_resnets_cifar").status == sc.PARTLY
    for seed in (1, 2, 3):  # option B beside option A at 20 layers, lower by more than the spread
        _run(tmp_path, "ResNet-20", seed, 1, 8.0 + 0.05 * seed, shortcut="B")
    c = _status(tmp_path, "shortcuts")
    assert c.status == sc.REPRODUCED and "option B-20" in c.said


def test_responses_from_the_shipped_nets_and_the_readers(tmp_path):
    path = tmp_path / "results/cifar10/responses.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"nets": {"plain-20": {"stds": [0.9, 0.8]}, "ResNet-20": {"stds": [0.7, 0.7]},
                                         "ResNet-56": {"stds": [0.4, 0.3]}}}))
    assert _status(tmp_path, "responses_vs_plain").status == sc.PARTLY  # one net each: points the way
    assert _status(tmp_path, "responses_depth").status == sc.PARTLY
    path.write_text(json.dumps({"nets": {"plain-20": {"stds": [0.5]}, "ResNet-20": {"stds": [0.7]}}}))
    assert _status(tmp_path, "responses_vs_plain").status == sc.NOT_REPRODUCED
    assert _status(tmp_path, "responses_depth").status == sc.NOT_YET
    path.write_text("{not json")  # half-written: the claim waits, the card does not break
    out = tmp_path / "outputs"
    _outputs(out, "04_layer_responses", stds={"plain-110": [5.8e6, 1e7], "ResNet-110": [0.5]})
    c = _status(tmp_path, "responses_vs_plain", out)
    assert c.status == sc.NOT_REPRODUCED and "diverged" in c.said and c.said.startswith("your run")
    _outputs(out, "04_layer_responses", stds={"plain-20": [1.0, float("nan")], "ResNet-20": [0.5], "ResNet-56": ["x"]})
    c = _status(tmp_path, "responses_vs_plain", out)
    assert c.status == sc.NOT_REPRODUCED and "diverged" in c.said  # a NaN layer is a diverged net


def test_records_of_another_form_are_skipped_not_fatal(tmp_path):
    runs = tmp_path / "results/cifar10/runs"
    runs.mkdir(parents=True)
    (runs / "main__odd.json").write_text(json.dumps({"spec": {"depth": 20}, "final": {}, "config": {}}))
    (runs / "main__list.json").write_text("[]")
    out = tmp_path / "outputs"
    _outputs(out, "03_cifar10_plain_vs_residual", table=[{"net": "plain-20"}, "row"])
    _outputs(out, "05_imagenet_recipe", tests={"center": 40.0})
    _outputs(out, "07_detection", maps=["not", "a", "dict"])
    card = sc.scorecard(tmp_path, out)
    assert {c.status for c in card} == {sc.NOT_YET, sc.BEYOND}


def test_imagenet_claims_read_whatever_tiny_imagenet_runs_exist(tmp_path):
    assert _status(tmp_path, "degradation_imagenet").status == sc.NOT_YET
    folder = tmp_path / "results/imagenet_tiny"
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text("[1, 2")
    (folder / "other.json").write_text(json.dumps({"what": "a precision note, not a run"}))
    assert _status(tmp_path, "degradation_imagenet").status == sc.NOT_YET
    runs = [{"name": n, "seed": s, "final": {"val_err": e + 0.01 * s}} for s in (1, 2, 3)
            for n, e in (("plain-18", 0.40), ("plain-34", 0.45), ("ResNet-18", 0.39), ("ResNet-34", 0.36))]
    (folder / "table2.json").write_text(json.dumps({"runs": runs}))
    assert _status(tmp_path, "degradation_imagenet").status == sc.REPRODUCED
    c = _status(tmp_path, "deeper_resnets_imagenet")
    assert c.status == sc.REPRODUCED and "results/imagenet_tiny/table2.json" in c.files
    (folder / "table2.json").write_text(json.dumps({"runs": runs[:4]}))  # one seed
    assert _status(tmp_path, "degradation_imagenet").status == sc.PARTLY


def test_test_modes_localization_and_detection_from_the_readers_outputs(tmp_path):
    out = tmp_path / "outputs"
    params = {"NUM_CLASSES": 10, "VAL_PER_CLASS": 50}
    _outputs(out, "05_imagenet_recipe", parameters=params,
             tests={"center": {"top1": 40.0}, "10crop": {"top1": 30.0}, "multiscale": {"top1": 20.0}})
    c = _status(tmp_path, "test_modes", out)
    assert c.status == sc.REPRODUCED and "500 validation images" in c.said
    _outputs(out, "05_imagenet_recipe", parameters=params,
             tests={"center": {"top1": 52.4}, "10crop": {"top1": 52.8}, "multiscale": {"top1": 56.8}})
    assert _status(tmp_path, "test_modes", out).status == sc.NOT_REPRODUCED
    _outputs(out, "06_localization", errors={"gt_cls_dense": 0.278, "baseline_gt_cls": 0.406,
                                             "baseline_mean_box": 0.268})
    c = _status(tmp_path, "localization", out)
    assert c.status == sc.NOT_REPRODUCED and "mean training box" in c.said  # the strongest baseline decides
    _outputs(out, "07_detection", maps={"ResNet-18": {"map_50": 0.30}, "plain-18": {"map_50": 0.097}})
    assert _status(tmp_path, "detection", out).status == sc.PARTLY  # one seed each


def test_the_markdown_links_resolve_in_this_checkout():
    text = sc.markdown(sc.scorecard(ROOT))
    links = re.findall(r"\]\(([^)#]+)", text)
    assert links and all((ROOT / link).exists() for link in links), [x for x in links if not (ROOT / x).exists()]
    assert text.count("\n| ") == len(sc.scorecard(ROOT))  # one row per claim, after the header
