"""The paper-comparison rows and verdicts of notebooks 01, 02, 04 and 05, pinned on planted numbers: each
row says what its inputs say, and each verdict turns with them."""
from __future__ import annotations

import pytest

from resnet_lib.base.paper import targets
from resnet_lib.experiments import architectures as arch
from resnet_lib.experiments import imagenet_eval as E
from resnet_lib.experiments import residual_report as rr
from resnet_lib.experiments import responses as rs

# ------------------------------------------------------------------------------------------ notebook 01


def _found_01(plain=(30.0, 20.0, 45.0), residual=(31.0, 18.0, 17.5)):
    runs = [{"block": b, "depth": d, "final": e, "params": 0}
            for d, p, r in zip((4, 10, 20), plain, residual) for b, e in (("plain", p), ("residual", r))]
    return {"degradation": runs, "zero_err": 0.0,
            "identity": {("plain", 4): [0.5] * 10 + [0.36] * 20, ("residual", 4): [0.1] * 10 + [0.002] * 20},
            "flow": [{"block": "plain", "depth": 8, "grad_norm": [40.0, 2.0, 4.0], "act_std": [1.0, 3.0], "loss": 2.3},
                     {"block": "residual", "depth": 8, "grad_norm": [3.0, 2.0, 2.0], "act_std": [1.0, 1.5], "loss": 2.3}],
            "gate_cost": [{"extra_fraction": 0.5}, {"extra_fraction": 1.0}],
            "highway": [{"gate_bias": -3.0, "depth": 20, "final": 25.0, "gate_init": 0.05, "gate_final": 0.05},
                        {"gate_bias": 3.0, "depth": 20, "final": 60.04, "gate_init": 0.94, "gate_final": 0.95}],
            "multigrid": {"jacobi": [1.0] * 12 + [0.5], "two_grid": [1.0, 1e-2, 1e-4, 1e-6, 1e-8]}}


SETTING_01 = dict(subset=300, image_size=8, epochs=2, identity_steps=30, flow_batch=8, highway_depth=6)


def test_notebook_01_rows_carry_the_planted_numbers():
    rows = {r["quantity"]: r for r in rr.paper_rows(_found_01(), SETTING_01)}
    assert rows["toy train error, plain-4 -> plain-20"]["ours"] == "30.0 -> 45.0"
    assert rows["toy train error, residual-4 -> residual-20"]["ours"] == "31.0 -> 17.5"
    assert rows["identity-learning MSE, plain 8 layers"]["ours"] == 0.36
    assert rows["identity-learning MSE, residual 8 layers"]["ours"] == 0.002
    assert rows["grad norm first/last 3x3 layer at init, plain-8"]["ours"] == 10.0
    assert rows["grad norm first/last 3x3 layer at init, residual-8"]["ours"] == 1.5
    assert rows["highway gate parameters / residual block parameters"]["ours"] == 0.5
    assert rows["toy train error, highway-6, gate bias +3"]["ours"] == 60.0
    assert rows["relative residual after 12 sweeps: Jacobi vs two-grid"]["ours"] == "5.00e-01 vs 1.00e-06"
    assert "300 CIFAR images at 8x8, 2 epochs" in rows["toy train error, plain-4 -> plain-20"]["note"]
    # over two seeds the degradation rows carry the mean, as the verdicts do, and say so
    found = {**_found_01(), "sweeps": {0: _found_01()["degradation"],
                                       1: _found_01(plain=(32.0, 22.0, 55.0), residual=(33.0, 20.0, 19.5))["degradation"]}}
    rows = {r["quantity"]: r for r in rr.paper_rows(found, SETTING_01)}
    assert rows["toy train error, plain-4 -> plain-20"]["ours"] == "31.0 -> 50.0"
    assert rows["toy train error, residual-4 -> residual-20"]["ours"] == "32.0 -> 18.5"
    assert rows["toy train error, plain-4 -> plain-20"]["note"].endswith("mean over 2 seeds")


def test_notebook_01_verdict_follows_the_numbers():
    text = rr.verdict(_found_01())
    assert "The plain stacks do best at 10 layers (20.0%)" in text
    # the residual stacks' highest error is named by its depth, not by a "worst at N layers or more" range
    assert "the highest of them is residual-4's 31.0%" in text and "or more is" not in text
    assert "plain: 8 layers 10;" in text and "residual: 8 layers 1.5." in text
    assert "The gate adds 50% parameters" in text and "+3: 60.0%" in text
    assert "the two-grid solver 1.0e-06" in text
    assert "best at 4 layers" in rr.verdict(_found_01(plain=(10.0, 20.0, 45.0)))
    # "too small to fit" only where the shallowest plain stack is not the best one
    assert "too small to fit" in text and "too small to fit" not in rr.verdict(_found_01(plain=(10.0, 20.0, 45.0)))
    # the planted plain stack at the mean predictor's MSE learned nothing, and the text says so
    assert "plain, 8 layers: 0.3600, no better than predicting the mean" in text
    assert "does not show that a plain stack *cannot* learn the identity" in text
    assert "residual, 8 layers: 0.0020" in text
    # the planted gates did not move (0.05 -> 0.05, 0.94 -> 0.95): the text says so, and draws no causal line
    assert "No mean gate moved by 0.05 or more during training" in text
    assert "decided" not in text and "not that they learned nothing" in text
    assert "Every stack trained" in text


def test_notebook_01_verdict_reads_the_seeds_when_given():
    found = _found_01()
    found["sweeps"] = {0: found["degradation"],
                       1: [{**r, "final": r["final"] + (1.0 if r["block"] == "plain" else -0.5)} for r in found["degradation"]]}
    text = rr.verdict(found)
    # every number of the degradation bullet is a mean over the seeds, with its spread: no first-seed values
    assert "Mean ± std over 2 seeds. The plain stacks do best at 10 layers (20.5% ± 0.7)" in text
    assert "4 layers 30.8% ± 0.4, 10 layers 17.8% ± 0.4, 20 layers 17.2% ± 0.4" in text
    assert "With the first seed" not in text and "(20.0%)" not in text
    assert "Over all seeds: Shown: plain-10 20.5% ± 0.7 against plain-20 45.5% ± 0.7" in text


def test_notebook_01_verdict_refuses_stacks_near_chance_and_sees_moving_gates():
    found = _found_01(plain=(30.0, 20.0, 88.0))
    found["highway"][1]["gate_final"] = 0.60
    found["identity"] = {("plain", 4): [0.1] * 30, ("residual", 4): [0.002] * 30}
    text = rr.verdict(found)
    assert "so not trained at all: plain-20 (88.0%)" in text
    assert "bias +3 moved by 0.05 or more (in at least one seed), the others did not" in text
    assert "no better than predicting the mean" not in text


def _sweeps_01(residual_by_seed, plain20=(50.0, 60.0), depths=(4, 20)):
    """Two seeds of planted plain and residual stacks: ``residual_by_seed`` is one tuple per seed, one error
    per depth of ``depths``."""
    return {s: [{"block": b, "depth": d, "final": e, "params": 0}
                for d, pr in zip(depths, res) for b, e in (("plain", 10.0 if d != 20 else plain20[s]), ("residual", pr))]
            for s, res in enumerate(residual_by_seed)}


def _highway_01(errors_by_bias, depth=20):
    """``{bias: (error seed 0, error seed 1)}`` as two seeds of highway_sweep records."""
    return {s: [{"block": "highway", "depth": depth, "gate_bias": b, "gate_init": 0.5, "gate_final": 0.5,
                 "params": 1, "final": errs[s]} for b, errs in errors_by_bias.items()] for s in (0, 1)}


def test_notebook_01_residual_stacks_get_a_verdict_on_degradation():
    inside = rr.residual_degradation(_sweeps_01([(0.5, 0.2), (1.0, 3.5)]))  # 0.75 -> 1.85, spread 1.6
    assert inside["status"] == "not shown" and inside["short"] == "no degradation shown (gap inside its interval)"
    assert inside["text"].startswith("No degradation shown in the residual stacks, as the paper expects")
    assert "Not shown by this run: the gap is inside its interval; residual-4 0.8% ± 0.4" in inside["text"]
    worse = rr.residual_degradation(_sweeps_01([(1.0, 20.0), (1.2, 21.0)]))
    assert worse["status"] == "shown" and worse["text"].startswith("The residual stacks degrade in this run")
    better = rr.residual_degradation(_sweeps_01([(20.0, 1.0), (21.0, 1.2)]))
    assert better["status"] == "contradicted" and "deeper is better" in better["text"]
    one = rr.residual_degradation({0: _sweeps_01([(0.5, 0.2), (1.0, 3.5)])[0]})
    assert one["status"] == "not shown" and one["text"].startswith("Whether the residual stacks degrade, this run cannot say")
    # the verdicts list carries it third, and the results row says it in its note
    sweeps = _sweeps_01([(0.5, 0.2), (1.0, 3.5)])
    assert [v["claim"].split(" ")[0] for v in rr.degradation_verdicts(sweeps)] == ["plain-20", "residual-20", "residual-20"]
    found = {**_found_01(), "sweeps": sweeps}
    rows = {r["quantity"]: r for r in rr.paper_rows(found, SETTING_01)}
    assert rows["toy train error, residual-4 -> residual-20"]["note"].endswith("no degradation shown (gap inside its interval)")


def test_notebook_01_highway_reading_follows_the_numbers():
    sweeps = _sweeps_01([(0.5, 0.2), (1.0, 3.5)], plain20=(50.0, 64.0))  # residual-20 1.85 ± 2.3, plain-20 57 ± 9.9
    # the reader's run: the open gate far above residual, the half-open one below both ends
    far = rr.highway_checks(_highway_01({-3.0: (31.5, 32.4), 0.0: (26.0, 27.1), 3.0: (56.7, 57.7)}), sweeps)
    assert far[0]["status"] == "shown" and "close to residual-20; it did not: residual-20 trained lower" in far[0]["text"]
    assert far[1]["status"] == "not shown" and "no gap to plain-20 beyond the interval, as expected" in far[1]["text"]
    assert far[2]["status"] == "shown" and "it did not: its error is below both" in far[2]["text"]
    # planted the way the prose expects: open gate near residual, half-open between the two ends
    near = rr.highway_checks(_highway_01({-3.0: (1.5, 3.0), 0.0: (20.0, 22.0), 3.0: (55.0, 59.0)}), sweeps)
    assert near[0]["status"] == "not shown" and "no gap to residual-20 beyond the interval, as expected" in near[0]["text"]
    assert near[2]["status"] is None and "its mean is between theirs, as expected" in near[2]["text"]
    # one seed: nothing is measured against the spread, and the text says the run cannot tell
    one = rr.highway_checks({0: _highway_01({-3.0: (31.5, 0), 3.0: (56.7, 0)})[0]}, {0: sweeps[0]})
    assert all(c["status"] == "not shown" and "this run cannot tell" in c["text"] for c in one)
    # the highway depth not among the degradation depths: said, not compared
    missing = rr.highway_checks(_highway_01({-3.0: (31.5, 32.4), 3.0: (56.7, 57.7)}, depth=6), sweeps)
    assert all("was not trained here" in c["text"] for c in missing)
    text = rr.highway_text(_highway_01({-3.0: (31.5, 32.5), 0.0: (26.0, 27.2), 3.0: (56.7, 57.7)}),
                           _sweeps_01([(0.5, 0.2), (1.0, 3.6)]))
    assert text.startswith("Training error, mean ± std over 2 seeds: highway, gate bias -3: 32.0% ± 0.7")
    assert "residual-20: 1.9% ± 2.4" in text and "decided" not in text


def test_notebook_01_highway_rows_and_plot_over_seeds():
    hw = _highway_01({-3.0: (31.0, 33.0), 3.0: (56.0, 58.0)}, depth=6)
    found = {**_found_01(), "highway_sweeps": hw}
    rows = {r["quantity"]: r for r in rr.paper_rows(found, SETTING_01)}
    assert rows["toy train error, highway-6, gate bias -3"]["ours"] == 32.0
    assert rows["toy train error, highway-6, gate bias +3"]["note"].endswith("mean over 2 seeds")
    assert "(mean ± std over 2 seeds): -3: 32.0% ± 1.4, +3: 57.0% ± 1.4" in rr.verdict(found)
    summary = rr.highway_summary(hw, _sweeps_01([(0.5, 0.2), (1.0, 3.5)], depths=(4, 6)))
    assert [r["stack"] for r in summary] == ["highway, gate bias -3", "highway, gate bias +3", "plain-6", "residual-6"]
    fig = rr.plot_highway(summary, epochs=2, depth=6)
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.0, 100.0)  # the whole range of an error
    assert any(list(line.get_xdata()) == [90.0, 90.0] for line in ax.get_lines())  # chance: ten classes


# ------------------------------------------------------------------------------------------ notebook 02

SUMMARY_02 = [{"name": "plain-34", "macs": 3.6e9, "params": 1, "paper_macs": 3.6e9, "rel_diff": 0.0},
              {"name": "ResNet-50", "macs": 3.9e9, "params": 1, "paper_macs": 3.8e9, "rel_diff": 0.026},
              {"name": "VGG-19", "macs": 20e9, "params": 1, "paper_macs": None, "rel_diff": None}]
PARITY_02 = [{"depth": 18, "params_equal": True, "max_abs_output_diff": 2e-6},
             {"depth": 50, "params_equal": False, "max_abs_output_diff": 3e-5}]
CIFAR_02 = [{"depth": 20, "params": 272474, "paper": "0.27M", "equal": True}]


def test_notebook_02_rows_and_verdicts():
    rows = {r["quantity"]: r for r in arch.paper_rows(SUMMARY_02, PARITY_02, CIFAR_02, input_size=224, stride_in="1x1")}
    assert rows["FLOPs ResNet-50"]["ours"] == 3.9 and rows["FLOPs ResNet-50"]["paper"] == 3.8
    assert rows["FLOPs VGG-19"]["paper"] is None
    assert rows["plain-34 FLOPs / VGG-19 FLOPs"]["ours"] == 18.0
    assert rows["ResNets with torchvision's parameter count and strict state_dict load"]["ours"] == "1/2"
    assert rows["ResNets with torchvision's parameter count and strict state_dict load"]["note"] == "depths 18, 50"
    assert rows["params CIFAR ResNet-20"]["ours"] == 272474
    assert arch.flops_verdict(SUMMARY_02) == ("plain-34 / VGG-19 = **18.0%** (paper: 18%). "
                                              "Largest FLOPs difference to Table 1: **2.60%**.")
    assert arch.flops_verdict(SUMMARY_02[1:]).startswith("Largest")  # no plain-34: no ratio
    text = arch.verdict(SUMMARY_02, PARITY_02, CIFAR_02)
    assert "within **2.60%**" in text and "ResNet-50 is at 3.90 x10^9" in text
    assert "the largest difference is ResNet-50's (3.90 x10^9 against the paper's 3.80 x10^9)" in text
    assert "1 of 2 ResNets" in text and "3.0e-05" in text and "1 of 1 CIFAR nets" in text


# ------------------------------------------------------------------------------------------ notebook 04

def _net(median, se=0.001, err=5.0, n_layers=5):
    return {"stds": [median] * n_layers, "median": median, "se": se, "batches": 8, "train_err_pct": err,
            "origin": "planted", "iters": 100}


def _by_claim(verdicts):
    return {v["claim"].split("'")[0] + ">" + v["claim"].split("(")[-1].rstrip(")"): v for v in verdicts}


def test_fig7_verdicts_shown_on_learned_nets():
    nets = {"plain-20": _net(0.8), "ResNet-20": _net(0.7), "ResNet-56": _net(0.4)}
    v = _by_claim(rs.fig7_verdicts(nets))
    assert v["ResNet-20>plain-20"]["status"] == "shown" and "+0.100" in v["ResNet-20>plain-20"]["text"]
    assert v["ResNet-56>ResNet-20"]["status"] == "shown"
    assert "spread over seeds is not measured" in v["ResNet-56>ResNet-20"]["text"]
    # one net per arm: shown for these nets, and said to be what the README's scorecard counts as partly
    assert v["ResNet-56>ResNet-20"]["text"].startswith("Shown for these two nets, not over seeds: ResNet-56 0.400")
    assert "scorecard counts this as partly" in v["ResNet-56>ResNet-20"]["text"]
    rows = {r["quantity"]: r for r in rs.paper_rows(nets, rs.fig7_verdicts(nets), "planted")}
    assert rows["median response std, ResNet-56 (planted)"]["ours"] == 0.4


@pytest.mark.parametrize("plain, why", [(_net(0.8, err=88.0), "within 5 points of chance"),
                                        (_net(5.8e6), "diverged"),
                                        (_net(0.8, err=float("nan")), "diverged")])
def test_fig7_verdicts_refuse_a_net_that_did_not_learn(plain, why):
    v = rs.fig7_verdicts({"plain-20": plain, "ResNet-20": _net(0.7)})
    assert [x["status"] for x in v] == ["not shown"] and why in v[0]["text"] and "plain-20" in v[0]["text"]


def test_fig7_verdicts_refuse_nets_whose_bn_is_still_at_its_initial_scale():
    """Short runs: every response sits near BN's initial std of 1. A clear gap (0.95 against 1.05) between such
    nets is not counted; the same gap between nets whose gamma has moved is; a net refused only for its BN
    scale is still drawn."""
    young = {"plain-20": {**_net(1.05), "bn_scale": 0.99}, "ResNet-20": {**_net(0.95), "bn_scale": 1.02}}
    v = rs.fig7_verdicts(young)
    assert v[0]["status"] == "not shown" and "initial scale" in v[0]["text"] and "1.020" in v[0]["text"]
    assert rs.refused(young) == [] and rs.at_initial_scale(young) == ["plain-20", "ResNet-20"]
    fig = rs.plot_fig7({"yours": {k: v["stds"] for k, v in young.items()}}, notes={"yours": "refused: plain-20"})
    assert "refused: plain-20" in fig.axes[0].get_title() and len(fig.axes[0].lines) == 2
    # one seed of two at the initial scale is enough to refuse
    mixed = {"plain-20": {**_net(1.05), "bn_scales": [0.7, 0.95]}, "ResNet-20": {**_net(0.95), "bn_scale": 0.6}}
    assert rs.fig7_verdicts(mixed)[0]["status"] == "not shown"
    grown = {"plain-20": {**_net(1.05), "bn_scale": 0.8}, "ResNet-20": {**_net(0.95), "bn_scale": 0.7}}
    assert rs.fig7_verdicts(grown)[0]["status"] == "shown"


def test_fig7_verdicts_use_the_spread_over_seeds_when_there_are_seeds():
    """Two seeds each: the interval is the seeds' spread, not the (tiny) sampling error; a gap of 0.05 with
    seeds 0.2 apart is not shown, with seeds 0.002 apart it is."""
    def seeded(medians):
        return {**_net(sum(medians) / len(medians), se=None), "medians": medians}
    wide = rs.fig7_verdicts({"plain-20": seeded([0.95, 0.75]), "ResNet-20": seeded([0.70, 0.90])})
    assert wide[0]["status"] == "not shown" and "over 2 and 2 seeds" in wide[0]["text"]
    tight = rs.fig7_verdicts({"plain-20": seeded([0.851, 0.849]), "ResNet-20": seeded([0.801, 0.799])})
    assert tight[0]["status"] == "shown" and "over 2 and 2 seeds" in tight[0]["text"]


def test_fig7_verdicts_say_no_inside_the_interval_and_when_contradicted():
    inside = rs.fig7_verdicts({"plain-20": _net(0.702, se=0.01), "ResNet-20": _net(0.700, se=0.01)})
    assert inside[0]["status"] == "not shown" and "inside its interval" in inside[0]["text"]
    wrong = rs.fig7_verdicts({"ResNet-20": _net(0.4), "ResNet-56": _net(0.7)})
    assert wrong[0]["status"] == "contradicted"


def test_fig7_plot_leaves_out_a_diverged_net():
    keep, out = rs.drawable({"plain-110": [1.0, 5.8e6], "ResNet-110": [0.5, 0.4]})
    assert list(keep) == ["ResNet-110"] and out == ["plain-110"]
    fig = rs.plot_fig7({"a": {"plain-110": [1.0, 5.8e6], "ResNet-110": [0.5, 0.4]}, "b": {"plain-20": [1, 1]}})
    assert len(fig.axes) == 4 and "plain-110" in fig.axes[0].get_title()
    assert max(max(ln.get_ydata()) for ln in fig.axes[0].lines) < 1  # the diverged net is not drawn
    # a net the verdict refuses (near chance) is left out too, and named
    nets = {"plain-20": _net(47.0, err=89.4), "ResNet-20": _net(0.8, err=83.0)}
    assert rs.refused(nets) == ["plain-20"]
    fig = rs.plot_fig7({"yours": {k: v["stds"] for k, v in nets.items()}}, refused=rs.refused(nets))
    assert [ln.get_label() for ln in fig.axes[0].lines] == ["ResNet-20"] and "plain-20" in fig.axes[0].get_title()
    # refused in one panel only: the trained plain-20 of the other panel is drawn
    trained = {"plain-20": _net(0.8, err=1.2), "ResNet-20": _net(0.7, err=0.9)}
    fig = rs.plot_fig7({"shipped": {k: v["stds"] for k, v in trained.items()},
                        "yours": {k: v["stds"] for k, v in nets.items()}},
                       refused={"shipped": rs.refused(trained), "yours": rs.refused(nets)})
    assert "plain-20" in [ln.get_label() for ln in fig.axes[0].lines] and "not drawn" not in fig.axes[0].get_title()
    assert "plain-20" not in [ln.get_label() for ln in fig.axes[1].lines]
    # the panels of a row share one y-scale, so that the short runs' stds near 1 read against the trained nets'
    assert fig.axes[0].get_ylim() == fig.axes[1].get_ylim()


# ------------------------------------------------------------------------------------------ notebook 05

TESTS_05 = {"center": {"top1": 50.0, "top5": 20.0}, "10crop": {"top1": 40.0, "top5": 15.0},
            "multiscale": {"top1": 30.0, "top5": 10.0}}


def test_notebook_05_rows_beside_tables_2_to_4():
    t = targets()
    rows = {r["quantity"]: r for r in E.paper_rows(TESTS_05, {"test_err": [0.6, 0.45]}, [4], depth=18,
                                                   num_classes=5, iters=8)}
    assert rows["top-1 error, 10-crop"] == {
        "quantity": "top-1 error, 10-crop", "ours": 40.0, "paper": t["imagenet_table2_top1_10crop"]["ResNet-18"],
        "unit": "%", "note": "Tiny ImageNet, 5 classes, 8 iterations; paper: ImageNet, ResNet-18 (Table 2)"}
    assert rows["top-1 error, multi-scale fully-conv"]["paper"] is None
    assert rows["10-crop minus multi-scale top-1"]["ours"] == 10.0
    assert rows["final error on the held-out training images (training curve)"]["ours"] == 45.0
    assert rows["lr drops found by the plateau rule"]["ours"] == 1
    assert not any(q.startswith("top-5") for q in rows)  # 5 classes: top-5 is always right
    rows34 = {r["quantity"]: r for r in E.paper_rows(TESTS_05, {"test_err": [0.5]}, [], depth=34, num_classes=10,
                                                     iters=8)}
    t3, t4 = t["imagenet_table3_10crop_val_top1_top5"], t["imagenet_table4_single_model_val_top1_top5"]
    assert rows34["top-1 error, multi-scale fully-conv"]["paper"] == t4["ResNet-34 B"][0]
    assert rows34["top-5 error, 10crop"]["paper"] == t3["ResNet-34 B"][1]


@pytest.mark.parametrize("tests, n_val, first, second", [
    (TESTS_05, 100, "Not shown", "Not shown"),  # 10 points on 100 images: inside twice the binomial se (±14)
    (TESTS_05, 10_000, "Shown", "Shown"),
    ({"center": {"top1": 30.0}, "10crop": {"top1": 40.0}, "multiscale": {"top1": 35.0}}, 10_000, "Contradicted", "Shown"),
])
def test_notebook_05_verdict_decides_each_step_with_evidence(tests, n_val, first, second):
    text = E.verdict(tests, [2, 4], n_val=n_val, epochs=1.5, iters=8, num_classes=5)
    assert "(1.5 epochs)" in text and "divided the lr 2 time(s)" in text
    lines = text.splitlines()
    assert lines[1].startswith(f"- 10 crops beat one centre crop: {first}")
    assert lines[2].startswith(f"- multi-scale beats 10 crops: {second}")
    if n_val == 100:
        assert f"**50.0 ± {E.binomial_se(50.0, 100):.1f}%** with one centre crop" in text
