"""The training engine: it learns, it resumes exactly, it refuses bad input early."""
import dataclasses
import json

import pytest
import torch

from resnet_lib.base.precision import resolve
from resnet_lib.data.cifar import load_cifar10
from resnet_lib.engine.checkpoint import RunStoreWarning, load_model
from resnet_lib.engine.config import StepSchedule, TrainConfig, epochs_to_iters
from resnet_lib.engine.loop import TrainingDiverged
from resnet_lib.experiments.cifar_runs import CifarRun, paper_recipe, run_cifar
from resnet_lib.experiments.cifar_runs import cli as train_cli


@pytest.fixture(scope="module")
def data():
    return load_cifar10()


def quick(iters=24, **kw):
    cfg = dataclasses.replace(TrainConfig().with_iters(iters), eval_every=iters // 2, checkpoint_every=iters // 4)
    return CifarRun(depth=kw.pop("depth", 8), train=cfg, subset=kw.pop("subset", 1024), test_subset=500, **kw)


def test_schedule_keeps_the_papers_shape():
    cfg = TrainConfig()
    assert (cfg.iters, cfg.milestones, cfg.lr, cfg.batch_size, cfg.weight_decay, cfg.momentum) == \
        (64000, (32000, 48000), 0.1, 128, 1e-4, 0.9)
    small = cfg.scaled(0.01)
    assert small.iters == 640 and small.milestones == (320, 480)
    s = StepSchedule(small)
    assert [s.lr_at(i) for i in (0, 319, 320, 479, 480, 639)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_resnet110_warmup_until_training_error_below_80_percent():
    assert paper_recipe(110).warmup and not paper_recipe(56).warmup
    s = StepSchedule(paper_recipe(110))
    assert s.lr_at(0) == 0.01
    s.observe(100, train_err=0.85)
    assert s.lr_at(101) == 0.01
    s.observe(400, train_err=0.79)
    assert s.lr_at(401) == 0.1 and s.warmup_ended_at == 400


def test_training_lowers_the_loss(data, tmp_path):
    res = run_cifar(quick(40, subset=1024), tmp_path, progress=False, data=data)
    h = res["history"]
    assert len(h["train_loss"]) == 2
    assert h["train_loss"][-1] < h["train_loss"][0] - 0.05
    assert h["train_loss"][0] < 2.6  # started near ln(10) = 2.30
    assert res["final"]["test_err"] < 0.85  # better than chance (90%) on held-out images
    assert json.loads((tmp_path / quick(40).slug / "result.json").read_text())["provenance"]["torch"]


def test_resume_equals_uninterrupted(data, tmp_path):
    run = quick(24)
    full = run_cifar(run, tmp_path / "a", progress=False, data=data)
    part = run_cifar(run, tmp_path / "b", progress=False, data=data, stop_after=13)  # mid-epoch, off the grid
    assert part["interrupted_at"] == 13
    resumed = run_cifar(run, tmp_path / "b", progress=False, data=data)
    assert resumed["history"] == full["history"]
    a, b = load_model(tmp_path / "a" / run.slug), load_model(tmp_path / "b" / run.slug)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_stored_run_is_not_retrained(data, tmp_path):
    run = quick(8)
    first = run_cifar(run, tmp_path, progress=False, data=data)
    again = run_cifar(run, tmp_path, progress=False, data=None)  # no data needed: nothing trains
    assert again["provenance"]["time_utc"] == first["provenance"]["time_utc"]
    with pytest.warns(RunStoreWarning, match="is replaced, as --force .* asked. It was moved aside"):
        forced = run_cifar(run, tmp_path, progress=False, data=data, force=True)
    assert forced["history"]["train_loss"] == first["history"]["train_loss"]  # same seed, same result
    # --force keeps the stored run, renamed, as a damaged file is kept: nothing is deleted
    [kept] = (tmp_path / run.slug).glob("result.json.replaced-*")
    assert json.loads(kept.read_text())["provenance"]["time_utc"] == first["provenance"]["time_utc"]
    assert len(list((tmp_path / run.slug).glob("checkpoint.pt.replaced-*"))) == 1


def test_divergence_stops_with_a_clear_message(data, tmp_path):
    run = dataclasses.replace(quick(16), train=dataclasses.replace(quick(16).train, lr=1e4))
    with pytest.raises(TrainingDiverged, match="diverged at iteration .*Lower the learning rate"):
        run_cifar(run, tmp_path, progress=False, data=data)


@pytest.mark.parametrize("make,match", [
    (lambda: TrainConfig(iters=0), "iters must be a positive"),
    (lambda: TrainConfig(iters=-5), "iters must be a positive"),
    (lambda: TrainConfig().with_iters(0), "positive integer"),
    (lambda: epochs_to_iters(0, 50000), "epochs must be positive"),
    (lambda: CifarRun(depth=21), "6n\\+2"),
    (lambda: CifarRun(shortcut="D"), "shortcut option"),
    (lambda: CifarRun(subset=60000), "subset 60000 is outside"),
    (lambda: TrainConfig(precision="fp8"), "unknown precision 'fp8'"),
])
def test_bad_input_fails_before_training(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_plan_rejects_bad_grids():
    from resnet_lib.experiments.cifar_grid import plan_runs
    with pytest.raises(ValueError, match="unknown net kind"):
        plan_runs([20], ["plane"])
    with pytest.raises(ValueError, match="positive"):
        plan_runs([20], epochs=-1)
    with pytest.raises(ValueError, match="lr_drops"):
        plan_runs([20], lr_drops=[0.75, 0.5])
    runs = plan_runs([20, 56], epochs=2, subset=1280)
    assert [r.name for r in runs] == ["plain-20", "ResNet-20", "plain-56", "ResNet-56"]
    assert runs[0].train.iters == 20 and runs[0].train.milestones == (10, 15)
    assert plan_runs([20], iters=100, lr_drops=[0.9])[0].train.milestones == (90,)
    assert plan_runs([20], iters=100, lr_drops=[])[0].train.milestones == ()
    assert plan_runs([20], iters=100, warmup=True)[0].train.warmup and not plan_runs([20], iters=100)[0].train.warmup
    assert plan_runs([110], iters=100)[0].train.warmup  # the paper's rule by default


def test_cli_trains_and_prints_json(tmp_path, capsys):
    rc = train_cli(["--depth", "8", "--iters", "4", "--subset", "512", "--eval-every", "4", "--out", str(tmp_path)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["name"] == "ResNet-8" and 0 <= out["test_err"] <= 1


def _fake(depth, residual, train_err, seed=0, iters=1000):
    return {"name": f"{'ResNet' if residual else 'plain'}-{depth}", "spec": {"depth": depth, "residual": residual},
            "final": {"train_err": train_err}, "config": {"seed": seed, "iters": iters, "eval_every": 100, "batch_size": 128}}


def _grid(errs_by_seed):
    return [_fake(d, r, e, seed) for seed, errs in enumerate(errs_by_seed)
            for (d, r), e in zip(((20, False), (56, False), (20, True), (56, True)), errs)]


@pytest.mark.parametrize("errs, statuses, says", [
    # plain-20, plain-56, ResNet-20, ResNet-56 per seed
    (((0.08, 0.30, 0.06, 0.05), (0.09, 0.31, 0.065, 0.052)), ["shown", "shown", "shown"], "Shown: plain-20"),
    (((0.08, 0.30, 0.06, 0.05), (0.09, 0.31, 0.05, 0.06)), ["shown", "shown", "not shown"], "inside its interval"),
    (((0.60, 0.88, 0.52, 0.50), (0.61, 0.89, 0.52, 0.51)), ["not shown", "not shown", "shown"], "within 5 points of chance"),
    (((0.30, 0.08, 0.06, 0.05), (0.31, 0.09, 0.065, 0.052)), ["contradicted", "shown", "shown"], "Contradicted"),
    (((0.08, 0.30, 0.06, 0.05),), ["not shown"] * 3, "one seed"),
])
def test_depth_verdicts_follow_the_numbers(errs, statuses, says):
    from resnet_lib.experiments.cifar_grid import depth_verdicts
    v = depth_verdicts(_grid(errs))
    assert [x["status"] for x in v] == statuses, [x["text"] for x in v]
    assert says in " ".join(x["text"] for x in v)


def test_depth_verdicts_one_run_each_use_the_paper_s_seed_spread_and_say_so():
    from resnet_lib.experiments.cifar_grid import depth_verdicts
    from resnet_lib.experiments.evidence import binomial_se
    v = depth_verdicts(_grid(((0.08, 0.30, 0.0554, 0.0528),)), one_run_se=True, what="one run each, seed 0")
    # 0.26 points on 12,800 images each is inside the interval (each run's error at least its sampling error,
    # about 0.2 points here, and at least the paper's own seed std, 0.16): not shown
    assert [x["status"] for x in v] == ["shown", "shown", "not shown"] and "inside its interval" in v[2]["text"]
    assert "the paper's own std over 5 runs of ResNet-110 (0.16 points)" in v[2]["text"] and "seed 0" in v[2]["text"]
    interval = 2 * (max(0.16, binomial_se(5.54, 12_800)) ** 2 + max(0.16, binomial_se(5.28, 12_800)) ** 2) ** 0.5
    assert f"±{interval:.2f}" in v[2]["text"]
    assert depth_verdicts(_grid(((0.08, 0.30, 0.0554, 0.0528),))[:2])[0]["status"] == "not shown"  # one depth pair


def test_own_run_summary_sends_a_claim_to_the_shipped_runs_only_where_they_show_it():
    """The reader's run: plain and ResNet both lose with depth (a slow start), so degradation is refused and
    deeper-is-better contradicted; the shipped runs show degradation and not deeper-is-better. Each claim is
    matched by kind (not position) and every source's verdict is named."""
    from resnet_lib.experiments.cifar_grid import depth_verdicts, own_run_summary
    own = depth_verdicts(_grid(((0.60, 0.70, 0.58, 0.62), (0.61, 0.71, 0.57, 0.63))))
    shipped = depth_verdicts(_grid(((0.08, 0.30, 0.0554, 0.0528),)), one_run_se=True)
    assert [v["status"] for v in own] == ["not shown", "shown", "contradicted"]
    assert "cannot be told from a slower start" in own[0]["text"] and "gap -5.00 points" in own[0]["text"]
    text = own_run_summary(own, shipped, "the shipped runs")
    assert text.startswith("Your run shows 1 of the 3 claims and contradicts 1")
    assert f"*{own[0]['claim']}*: shown by the shipped runs, at their own depths (*{shipped[0]['claim']}*)" in text
    assert f"*{own[2]['claim']}*: not shown by the shipped runs, at their own depths (*{shipped[2]['claim']}*)" in text
    planted = [dict(v, status="shown") for v in shipped]
    assert (f"*{own[2]['claim']}*: shown by the shipped runs, at their own depths (*{shipped[2]['claim']}*)"
            in own_run_summary(list(reversed(own)), list(reversed(planted)), "the shipped runs"))
    assert own_run_summary(planted, shipped) == "Your run shows 3 of the 3 claims."
    both = own_run_summary(own, shipped, "the shipped runs", more=[("the 64k runs", planted)])
    assert "not shown by the shipped runs, at their own depths" in both and "; shown by the 64k runs" in both
    # without the ResNets' own loss with depth, the plain nets' gap stands as degradation
    plain_only = depth_verdicts(_grid(((0.60, 0.70, 0.58, 0.57), (0.61, 0.71, 0.57, 0.56))))
    assert plain_only[0]["status"] == "shown"


def test_depth_verdicts_on_runs_of_one_plain_depth_still_test_the_resnets():
    """The shipped 64k runs: plain-20 and ResNet-20/56 only. Degradation needs two plain depths and says so;
    the shortcuts are tested at 20 layers and deeper-is-better on the ResNets."""
    from resnet_lib.experiments.cifar_grid import depth_verdicts
    runs = [_fake(20, False, 0.0124), _fake(20, True, 0.0074), _fake(56, True, 0.0024)]
    v = {x["kind"]: x for x in depth_verdicts(runs, one_run_se=True)}
    assert v["degradation"]["status"] == "not shown" and "fewer than two depths of plain net" in v["degradation"]["text"]
    assert v["shortcuts"]["claim"].startswith("ResNet-20 ends below plain-20")
    assert v["deeper"]["claim"].startswith("ResNet-56 ends with a lower training error than ResNet-20")
    assert v["deeper"]["status"] == "shown"
    assert depth_verdicts(runs[:2])[2]["text"] == ("Not shown by these runs: these runs hold fewer than two depths "
                                                    "of ResNet.")
    assert "devices" not in v["deeper"]["text"]  # no device recorded (the reader's runs): nothing said
    # shipped runs on two devices: the verdict says the gap also holds the devices' arithmetic
    for r, gpu in zip(runs, ("cpu (x86_64, 2 threads)", "NVIDIA H200", "NVIDIA H100 80GB HBM3")):
        r.update(gpu=gpu, pieces=[{"device": gpu, "start": 0, "end": 1000}])
    v = {x["kind"]: x for x in depth_verdicts(runs, one_run_se=True)}
    assert "ResNet-56 trained on H100 80GB HBM3 and ResNet-20 on H200, so the gap also holds" in v["deeper"]["text"]


def _calibration_file(folder, name, setting, errs_by_seed, precision="fp32"):
    runs = [{"name": net, "seed": seed, "train_err": err, "cpu_path": {"precision": precision, "onednn_isa": "Intel AVX2"}}
            for seed, errs in errs_by_seed.items()
            for net, err in zip(("plain-20", "plain-56", "ResNet-20", "ResNet-56"), errs)]
    (folder / name).write_text(json.dumps({"setting": setting, "runs": runs}))


def test_calibration_table_and_summary_follow_the_stored_runs(tmp_path):
    """Notebook 03 renders its calibration from results/calibration/nb03/; planted numbers come out as planted."""
    from resnet_lib.experiments.cifar_grid import calibration_summary, calibration_table
    ours = {"subset": 5000, "batch": 32, "iters": 200, "lr": 0.02}
    _calibration_file(tmp_path, "a.json", ours, {0: (0.60, 0.80, 0.50, 0.49), 1: (0.62, 0.81, 0.52, 0.55)})
    _calibration_file(tmp_path, "b.json", {**ours, "lr": 0.1}, {0: (0.70, 0.88, 0.60, 0.85)}, precision="bf16 autocast")
    (tmp_path / "c.json").write_text(json.dumps({"setting": ours, "runs": [  # interrupted: one net only, left out
        {"name": "plain-20", "seed": 2, "train_err": 0.6, "cpu_path": {"precision": "fp32", "onednn_isa": "x"}}]}))
    rows = calibration_table(tmp_path)
    assert [(r["lr"], r["seed"], r["precision"]) for r in rows] == [(0.02, 0, "fp32"), (0.02, 1, "fp32"),
                                                                    (0.1, 0, "bf16 autocast")]
    assert rows[0]["plain: 56 minus 20"] == pytest.approx(20.0) and rows[0]["ResNet: 56 minus 20"] == pytest.approx(-1.0)
    assert [r["shows the paper's story"] for r in rows] == [True, False, False]
    text = calibration_summary(rows, lr=0.02, batch_size=32, iters=200, subset=5000)
    first, second = text.splitlines()
    assert first.startswith("- Notebook 03's defaults: the story held in 1 of 2 runs (seeds 0, 1; fp32)")
    assert "+19.0 to +20.0" in first and "-1.0 to +3.0" in first
    assert second.startswith("- lr 0.1, batch 32, 200 iterations, 5000 images: the story held in 0 of 1")
    assert "would be refused: plain-56 ended near chance in 1" in second  # 88% is within 5 points of 90% (and 85% too)
    assert "refused" not in first
    assert "No stored calibration run has notebook 03's parameters" in calibration_summary(
        rows, lr=0.05, batch_size=32, iters=200, subset=5000)


def test_final_on_subset_takes_the_last_curve_point_and_names_its_set(tmp_path, data):
    run = dataclasses.replace(quick(iters=8), final_on_subset=True)
    assert run.slug != quick(iters=8).slug  # stored apart from a full-test run (the identity hash differs)
    res = run_cifar(run, tmp_path, device="cpu", progress=False, data=data)
    assert res["final"]["test_err"] == res["history"]["test_err"][-1]
    assert res["eval_set"] == "test500"
    path = res["provenance"]["cpu_path"]  # precision "auto": the policy base.precision.AUTO names for a CPU
    assert res["precision"] == resolve(torch.device("cpu"), "auto").label and path["onednn_isa"]


def test_the_final_training_error_window_is_never_a_sliver():
    """400 iterations and 6 evaluations: evaluating every 66 left a last window of 4 iterations behind the final
    training error (128 images); every 67 leaves 65, and train_images_behind counts the window that is there."""
    from resnet_lib.experiments.cifar_grid import plan_runs, train_images_behind
    run = plan_runs([20], ["resnet"], iters=400, evals=6, batch_size=32, lr_drops=[])[0]
    assert run.train.eval_every == 67
    assert train_images_behind({"config": {"iters": 400, "eval_every": 67, "batch_size": 32}}) == 65 * 32
    assert train_images_behind({"config": {"iters": 400, "eval_every": 66, "batch_size": 32}}) == 4 * 32
    assert train_images_behind({"config": {"iters": 16000, "eval_every": 2000, "batch_size": 128}}) == 2000 * 128
