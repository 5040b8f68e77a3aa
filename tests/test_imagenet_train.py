"""``train-imagenet``'s honesty: the images that steer the plateau rule are not the reported ones, and a
stored run is reused only when every setting that shapes it is the same."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_distributed import _fake_tiny_imagenet

from resnet_lib.data.imagenet import TINY_AUG
from resnet_lib.engine.loop import evaluate
from resnet_lib.experiments import imagenet_train as T
from resnet_lib.models.imagenet import ImageNetSpec


def test_holdout_split_is_stratified_disjoint_and_fixed():
    labels = torch.arange(4).repeat_interleave(20)
    keep, held = T.holdout_split(labels, 0.1)
    assert set(keep.tolist()).isdisjoint(held.tolist()) and len(keep) + len(held) == 80
    assert torch.bincount(labels[held]).tolist() == [2, 2, 2, 2]
    assert torch.equal(held, T.holdout_split(labels, 0.1)[1])  # the same split every time
    assert len(T.holdout_split(labels, 0.0)[1]) == 0
    with pytest.raises(ValueError, match="holdout"):
        T.holdout_split(labels, 1.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _fake_tiny_imagenet(tmp_path_factory.mktemp("tiny"), train=12, val=4)


def _data(root, **kw):
    return T.tiny_imagenet_data(root, batch_size=8, aug=TINY_AUG, channels_last=False, progress=False,
                                holdout=0.25, **kw)


def test_plateau_images_are_disjoint_from_the_trained_and_the_reported_ones(tiny):
    data = _data(tiny)
    train, held, val = (set(data.files[k]) for k in ("train", "holdout", "val"))
    assert len(held) == 6 and len(train) == 18 and len(val) == 8
    assert train.isdisjoint(held) and held.isdisjoint(val) and train.isdisjoint(val)
    assert all("/train/" in p for p in held) and all("/val/" in p for p in val)
    assert len(data.train.data) == 18 and len(data.holdout.data) == 6  # the sources hold exactly those


def _train(data, monitor):
    recipe = T.ImageNetRecipe(T.imagenet_train_config(iters=4, batch_size=8, lr=0.05, eval_every=1,
                                                      checkpoint_every=0, precision="fp32"),
                              T.PlateauConfig(patience=0, monitor=monitor), TINY_AUG)
    model, result = T.train_imagenet(data, ImageNetSpec(18, num_classes=2), recipe, device="cpu", progress=False)
    return model, result


def _scramble_val(data):
    """The same run, but every validation image labelled class 0 (errors move whatever the net predicts)."""
    zeros = torch.zeros_like(data.val.labels)
    data.val.labels, data.val_labels = zeros, zeros
    return data


def test_reported_images_never_steer_training(tiny):
    m1, r1 = _train(_data(tiny), "holdout")
    scrambled = _scramble_val(_data(tiny))
    m2, r2 = _train(scrambled, "holdout")
    assert r1["history"] == r2["history"] and r1["lr_drops"] == r2["lr_drops"]
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert r2["final"]["test_err"] == evaluate(m2, scrambled.val, "cpu", "off")["err"]  # reported: val
    assert r1["images"]["schedule_monitor"] == "holdout" and r1["images"]["curve_set"] == "holdout"
    assert r1["images"]["counts"] == {"train": 18, "holdout": 6, "val": 8}
    # the check can fail: when the rule watches the validation images, changing them changes training
    _, v1 = _train(_data(tiny), "val")
    _, v2 = _train(_scramble_val(_data(tiny)), "val")
    assert v1["history"]["test_err"] != v2["history"]["test_err"]


def test_no_holdout_needs_an_explicit_monitor(tiny):
    with pytest.raises(ValueError, match="monitor='val'"):
        _train(T.tiny_imagenet_data(tiny, batch_size=8, channels_last=False, progress=False, holdout=0), "holdout")


# ------------------------------------------------------------------------------------ run identity

def _cli(data, out, *extra, capsys):
    args = ["--data", str(data), "--depth", "18", "--iters", "2", "--batch-size", "8", "--lr", "0.02",
            "--precision", "fp32", "--device", "cpu", "--out", str(out), "--no-test", "--holdout", "0.25", *extra]
    assert T.cli(args) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_stored_run_is_reused_only_on_an_exact_match(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    first = _cli(tiny, out, capsys=capsys)
    stamp = (out / "checkpoint.pt").stat().st_mtime_ns
    assert _cli(tiny, out, capsys=capsys) == first  # identical request: reused, not retrained
    assert (out / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("run.*"))
    old_identity = json.loads((out / T.IDENTITY).read_text())

    fewer = _cli(tiny, out, "--train-per-class", "8", capsys=capsys)  # a data option: trains again
    assert (out / "checkpoint.pt").stat().st_mtime_ns != stamp, "a stored run was reused under other settings"
    assert fewer["images"]["counts"]["train"] == 12 and first["images"]["counts"]["train"] == 18
    [aside] = tmp_path.glob("run.*")  # the older run is kept beside it, untouched
    assert aside.name == f"run.{T.identity_hash(old_identity)}"
    assert json.loads((aside / T.IDENTITY).read_text()) == old_identity
    assert (aside / "checkpoint.pt").stat().st_mtime_ns == stamp

    other = tmp_path / "other_copy"  # the same images in another folder: --data differs, so it retrains
    shutil.copytree(tiny, other)
    _cli(other, out, "--train-per-class", "8", capsys=capsys)
    assert len(list(tmp_path.glob("run.*"))) == 2

    for flag in (["--seed", "1"], ["--eval-every", "1"], ["--patience", "0"], ["--plateau-on", "val"]):
        before = len(list(tmp_path.glob("run.*")))
        _cli(other, out, "--train-per-class", "8", *flag, capsys=capsys)
        assert len(list(tmp_path.glob("run.*"))) == before + 1, flag


def test_a_run_folder_without_a_recorded_identity_is_moved_aside(tmp_path):
    old = tmp_path / "run"
    old.mkdir()
    (old / "result.json").write_text("{}")
    moved = T.claim_run_dir(old, {"x": 1})
    assert moved == tmp_path / "run.unrecorded" and (moved / "result.json").exists()
    assert json.loads((old / T.IDENTITY).read_text()) == {"x": 1}
    assert T.claim_run_dir(old, {"x": 1}) is None
