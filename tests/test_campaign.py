"""The campaign (issue #10): stopped by its budget and resumed, it ends bitwise where one uninterrupted call
ends; its summary says what is done, in progress and left; it exports into the shipped results format."""
import dataclasses
import itertools
import json
import os
import signal

import pytest
import torch

from resnet_lib.base import io
from resnet_lib.base.io import device_name
from resnet_lib.campaign import driver as cp
from resnet_lib.campaign import sets as cs
from resnet_lib.data.cifar import load_cifar10
from resnet_lib.engine.checkpoint import load_model
from resnet_lib.experiments import cost1202, shipped
from resnet_lib.models.cifar import cifar_resnet
from resnet_lib.models.complexity import count_params

TINY = dict(seeds=(1,), scale=16 / 64_000, subset=512, test_subset=100)  # ResNet-8 and plain-8, 16 iterations


@pytest.fixture(scope="module")
def data():
    return load_cifar10()


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    summary = cp.run_campaign("smoke", out, 1e9, data=data, device="cpu", progress=False, log=None, **TINY)
    return out, summary


@pytest.fixture(scope="module")
def straight_fused(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight_fused")
    summary = cp.run_campaign("smoke", out, 1e9, data=data, device="cpu", progress=False, log=None, **FUSED)
    return out, summary


FUSED = {**TINY, "seeds": (1, 2)}  # each net's two seeds fused into one job


def _same_runs(out_a, out_b, opts):
    for e in cp.campaign_entries("smoke", **opts):
        a, b = cp.run_dir(out_a, e), cp.run_dir(out_b, e)
        ra, rb = (json.loads((d / "result.json").read_text()) for d in (a, b))
        assert ra["history"] == rb["history"] and ra["final"] == rb["final"]
        for (k, va), vb in zip(load_model(a).state_dict().items(), load_model(b).state_dict().values()):
            assert torch.equal(va, vb), (e.label, k)


def test_stopped_by_budget_and_resumed_equals_straight(straight, data, tmp_path):
    out_a, summary_a = straight
    assert summary_a["count"] == {"done": 2, "in progress": 0, "left": 0}
    # A clock that ticks one "second" per reading makes the stop deterministic: it is read once before the first
    # round and once after each round of steps, so 12 s of budget stop the first run after 11 steps.
    ticks = itertools.count().__next__
    part = cp.run_campaign("smoke", tmp_path, 12, data=data, device="cpu", progress=False, log=None, clock=ticks,
                           startup_s=0, margin_s=0, **TINY)
    assert part["count"] == {"done": 0, "in progress": 1, "left": 1}
    assert part["rows"][0]["iteration"] == 11  # mid-epoch (4 batches per epoch), off any checkpoint grid
    assert part["time_left_s"] is not None  # estimated from the measured speed
    lines = []
    done = cp.run_campaign("smoke", tmp_path, 1e9, data=data, device="cpu", progress=False, log=lines.append, **TINY)
    assert done["count"]["done"] == 2 and "2 done, 0 in progress, 0 left" in lines[0]
    _same_runs(out_a, tmp_path, TINY)
    calls = json.loads((tmp_path / cp.STATE).read_text())["calls"]
    assert [c["stopped"] for c in calls] == ["budget", "finished"]


def test_ctrl_c_stops_between_steps_with_checkpoints_and_only_started_finishes_what_is_begun(straight, data,
                                                                                              tmp_path):
    """A real SIGINT (sent by the clock after the 7th round) asks for a stop: the run in training stops after its
    step with a checkpoint, off the checkpoint grid, and the call is recorded as interrupted. Then ``only``
    trains the named net alone, ``only_started`` finishes the run begun and starts no other; all end as straight."""
    reads = itertools.count()

    def clock():
        if next(reads) == 8:  # read once before the first round, then once after each
            os.kill(os.getpid(), signal.SIGINT)
        return 0.0

    # Python's own Ctrl-C handling, even where this process was started with SIGINT ignored (a background `&`),
    # which the campaign rightly leaves alone
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        part = cp.run_campaign("smoke", tmp_path, 1e9, data=data, device="cpu", progress=False, log=None, clock=clock,
                               **TINY)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the usual handling is back
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert part["stopped"] == "interrupted" and part["rows"][0]["iteration"] == 7
    assert part["count"] == {"done": 0, "in progress": 1, "left": 1}
    with pytest.raises(ValueError, match=r"no net \['plain-9'\]; its nets: \['ResNet-8', 'plain-8'\]"):
        cp.run_campaign("smoke", tmp_path, 1e9, data=data, device="cpu", progress=False, log=None, only=("plain-9",),
                        **TINY)
    named = cp.run_campaign("smoke", tmp_path, 1e9, data=data, device="cpu", progress=False, log=None,
                            only=("Plain-8",), **TINY)
    assert named["count"] == {"done": 1, "in progress": 1, "left": 0} and named["stopped"] == "finished"
    assert [r["iteration"] for r in named["rows"]] == [7, 16]
    begun = cp.run_campaign("smoke", tmp_path, 1e9, data=data, device="cpu", progress=False, log=None,
                            only_started=True, **TINY)
    assert begun["count"] == {"done": 2, "in progress": 0, "left": 0} and begun["stopped"] == "finished"
    _same_runs(straight[0], tmp_path, TINY)
    calls = json.loads((tmp_path / cp.STATE).read_text())["calls"]
    assert [c["stopped"] for c in calls] == ["interrupted", "finished", "finished"]
    assert "interrupted; the same command continues" in cp.format_summary("smoke", part, calls[0])


def test_fused_jobs_in_lanes_stopped_and_resumed_equal_straight_and_leave_ordinary_run_folders(straight_fused, data,
                                                                                              tmp_path):
    """Seeds 1 and 2 of each net as one fused job, the two jobs trained at once (two lanes, a step of each in
    turn): stopped mid-epoch by the budget, resumed, they end bitwise where one job after the other, without a
    stop, ends; and each run's folder is one that ``run_cifar`` itself reuses."""
    out_a, summary_a = straight_fused
    assert [j.label for j in cp.campaign_jobs("smoke", **FUSED)] == ["ResNet-8 seeds 1+2 (fused)",
                                                                      "plain-8 seeds 1+2 (fused)"]
    assert summary_a["count"] == {"done": 4, "in progress": 0, "left": 0}
    ticks = itertools.count().__next__
    part = cp.run_campaign("smoke", tmp_path, 12, data=data, device="cpu", progress=False, log=None, clock=ticks,
                           startup_s=0, margin_s=0, together=2, **FUSED)
    assert part["count"] == {"done": 0, "in progress": 4, "left": 0}
    its = [r["iteration"] for r in part["rows"]]
    assert its[:2] == [11, 11] and 2 < its[2] == its[3] < 11  # plain-8 warmed up alone first: fused from there
    job = cp.campaign_jobs("smoke", **FUSED)[0]
    assert (tmp_path / "runs" / job.key / "checkpoint.pt").exists()  # the fused job's own checkpoint
    assert cp.run_campaign("smoke", tmp_path, 1e9, data=data, device="cpu", progress=False, log=None, together=2,
                           **FUSED)["count"]["done"] == 4
    assert [c["together"] for c in json.loads((tmp_path / cp.STATE).read_text())["calls"]] == [2, 2]
    _same_runs(out_a, tmp_path, FUSED)
    assert not (tmp_path / "runs" / job.key).exists()  # every run's folder holds its share now
    speeds = json.loads((tmp_path / cp.STATE).read_text())["speeds"]
    cpu = device_name(torch.device("cpu")) + f" | {cs.TABLE6_PRECISION}"  # every smoke run in that policy
    assert sorted(speeds) == [cpu, f"{cpu} | 2 fused"]  # plain-8's warm-up: alone, then fused
    for j in cp.campaign_jobs("smoke", **FUSED):
        for e in j.entries:
            res = cp.run_cifar(e.run, tmp_path / "runs" / "main", device="cpu", progress=False, data=data)
            assert res["fused"] == {"k": 2, "seeds": [1, 2], "job": j.key.split("/")[1]}  # stored: not retrained
            assert res["config"]["seed"] == e.run.train.seed and len(res["history"]["iteration"]) == 16
            if e.run.train.warmup:  # each run's own warm-up, before the fusing
                assert res["warmup_ended_at"] == 2 and res["history"]["lr"][:2] == [0.01, 0.01]
    w1, w2 = (load_model(cp.run_dir(tmp_path, e)).conv1.weight for e in job.entries)
    assert not torch.equal(w1, w2)


def test_order_of_work_and_sets():
    t6 = [e.label for e in cp.campaign_entries("table6")]
    assert t6[:10] == [f"ResNet-{d} seed 1" for d in cp.TABLE6_DEPTHS] + [f"plain-{d} seed 1" for d in cp.TABLE6_DEPTHS]
    assert t6[10:] == [f"ResNet-{d} seed {s}" for d in cp.TABLE6_DEPTHS for s in (2, 3)]
    # every Table 6 run in the one policy chosen for it, named (never "auto": the policy is part of the identity)
    assert {e.run.train.precision for e in cp.campaign_entries("table6")} == {cs.TABLE6_PRECISION} != {"auto"}
    assert {e.group for e in cp.campaign_entries("table6")} == {"main"}
    jobs = [j.label for j in cp.campaign_jobs("table6")]
    assert jobs[10:] == [f"ResNet-{d} seeds 2+3 (fused)" for d in cp.TABLE6_DEPTHS]  # 110: after its warm-up
    assert len(cp.campaign_jobs("table6", fuse=False)) == 20
    full = cp.campaign_entries("table6")[0].run.train
    assert (full.iters, full.eval_every, full.milestones) == (64_000, 2_000, (32_000, 48_000))
    assert cp.campaign_entries("table6")[4].run.train.warmup  # ResNet-110: the paper's warm-up
    prec = cp.campaign_entries("precision", seeds=(1, 2, 3))
    assert len(prec) == 6 and {(e.group, e.run.train.precision) for e in prec} == {("fp32", "fp32"), ("bf16", "bf16")}
    assert len({e.run.slug for e in prec}) == 6  # the policy is in the identity, so in the slug
    assert [j.label for j in cp.campaign_jobs("precision", seeds=(1, 2, 3))] == \
        ["ResNet-20 fp32 seeds 1+2+3 (fused)", "ResNet-20 bf16 seeds 1+2+3 (fused)"]


def test_campaign_refuses_a_folder_of_another_campaign(straight, data):
    out, _ = straight
    with pytest.raises(ValueError, match="belongs to another campaign"):
        cp.run_campaign("smoke", out, 10, data=data, device="cpu", progress=False, log=None,
                        **{**TINY, "seeds": (2,)})
    with pytest.raises(ValueError, match="unknown campaign"):
        cp.campaign_entries("table7")


def test_export_and_loaders(straight, data, tmp_path):
    out, _ = straight
    written = shipped.export_campaign(out, tmp_path, device="cpu", data=data)
    assert len(written["runs"]) == 2 and not written["weights"]  # ResNet-8 is none of Fig. 7's nets
    rec = shipped.shipped_runs(tmp_path)[0]
    for k in ("config", "seed", "history", "final", "wall_s", "gpu", "torch", "precision", "git"):
        assert k in rec, k
    assert rec["history_points"] == 16 and rec["final"]["test_err"] <= 1
    assert shipped.table6_rows(shipped.shipped_runs(tmp_path)) == []  # 16-iteration runs are not Table 6
    assert shipped.shipped_runs(tmp_path / "nothing") == [] and "gpu_session.sh" in shipped.EMPTY


def test_fp16_weights_load_without_pickle(tmp_path):
    """The weights format on its own (a full export needs 64k-iteration nets): a dict of fp16 tensors that
    ``weights_only=True`` loads, back into a float32 net with the same outputs to fp16 precision."""
    torch.manual_seed(0)
    net = shipped.cifar_resnet(20).eval()
    (tmp_path / "weights").mkdir()
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()},
               tmp_path / "weights" / "ResNet-20.pt")
    back = shipped.shipped_nets(tmp_path)["ResNet-20"]
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(back(x), net(x), rtol=2e-2, atol=2e-2)


def _planted(depth, residual, seed, test_err, iters=64_000):
    return {"name": f"{'ResNet' if residual else 'plain'}-{depth}", "seed": seed, "final": {"test_err": test_err},
            "spec": {"depth": depth, "residual": residual, "shortcut": "A"}, "config": {"iters": iters},
            "history": {"iteration": [1], "train_err": [0.5], "test_err": [0.5]}}


def test_table6_and_fig6_from_planted_records():
    runs = [_planted(20, True, s, e) for s, e in ((1, 0.080), (2, 0.082), (3, 0.084))]
    runs += [_planted(110, True, 1, 0.065), _planted(20, False, 1, 0.09), _planted(56, True, 1, 0.5, iters=100)]
    rows = shipped.table6_rows(runs, own=[{"spec": {"depth": 20, "residual": True}, "final": {"test_err": 0.53}}])
    assert [r["net"] for r in rows] == ["ResNet-20", "ResNet-110"]  # plain nets and short runs are not Table 6
    assert rows[0]["n"] == 3 and rows[0]["test error % (ours)"] == "8.20 ± 0.20" and rows[0]["paper %"] == "8.75"
    assert rows[0]["your run %"] == 53.0 and rows[1]["your run %"] is None
    assert rows[1]["test error % (ours)"] == "6.50" and "mean 6.61" in rows[1]["paper %"]
    assert [(r["name"], r["seed"]) for r in shipped.fig6_runs(runs)] == [("plain-20", 1), ("ResNet-20", 1), ("ResNet-110", 1)]
    for r in runs:
        r.update(gpu="NVIDIA H200", torch="2.11", precision="bf16 autocast")
    text = shipped.coverage_text(runs)
    assert "5 run(s) shipped" in text and "H200, torch 2.11, bf16 autocast" in text  # the 100-iteration run is not
    assert "ResNet-32, ResNet-44, ResNet-56, plain-32" in text and "plain-20," not in text
    assert "2 more seed(s) of ResNet-110" in text and "of ResNet-20" not in text
    assert shipped.coverage_text(runs[-1:]) == shipped.EMPTY
    assert rows[0]["gap (points)"] == "-0.55" and rows[1]["gap (points)"] == "-0.11"  # to the paper's mean for 110
    gaps = shipped.gap_text(runs)
    # ResNet-20: 3 seeds, 2 * hypot(0.20 / sqrt(3), 0.16) = 0.39; ResNet-110: one run, its 10k test images'
    # sampling (0.25 > 0.16), 2 * hypot(0.25, 0.16) = 0.59
    assert ("ResNet-20 -0.55 (n=3, seed std 0.20, outside its interval ±0.39); ResNet-110 -0.11 (n=1, within its "
            "interval ±0.59)") in gaps
    assert "fewer than 3 seeds (ResNet-110)" in gaps and shipped.gap_text(runs[-1:]) == ""
    trend = shipped.depth_trend_text(runs).split("\n")
    assert trend[0] == ("By depth, ResNet-20 / 110: mean test error here 8.20 → 6.50 %, in the paper 8.75 → 6.61 %. "
                        "Each step through the same rule as the verdicts:")
    # one run of ResNet-110: the one-run standard error (its 10k test images' sampling, 0.25 > the paper's 0.16)
    assert trend[1].startswith("- ResNet-20 → ResNet-110: Shown: ResNet-110 6.50% against ResNet-20 8.20% ± 0.20: "
                               "gap +1.70 points, interval ±0.74 (one run each")
    worse = runs + [_planted(56, True, 1, 0.083), _planted(56, True, 2, 0.085)]
    steps = shipped.depth_trend_text(worse).split("\n")[1:]
    assert steps[0].startswith("- ResNet-20 → ResNet-56: Not shown by this run: the gap is inside its interval")
    assert "twice the standard error over 2 and 3 seeds" in steps[0]  # seeds on both sides: their spread
    assert steps[1].startswith("- ResNet-56 → ResNet-110: Shown")
    assert shipped.depth_trend_text(runs[:3]) == ""
    odd = [_planted(8, True, 1, 0.2)]  # a depth the paper has no number for: no gap, in the table or the text
    assert shipped.table6_rows(odd)[0]["gap (points)"] is None and shipped.gap_text(odd) == ""
    mixed = dict(runs[0], pieces=[{"device": "NVIDIA H200", "end": 5}, {"device": "cpu", "end": 8}],
                 gpu="H200 for iterations 0-5 + cpu", history={"iteration": [2, 4, 6, 8], "test_err": [.3, .2, .1, .05]})
    assert ("ResNet-20 seed 1 on H200 for iterations 0-5 + cpu, bf16 autocast (test error 20.00% at iteration 4, "
            "before the first part ended; 8.00% at the end)") in shipped.coverage_text([mixed])


def test_precision_rows_compare_full_fp32_with_bf16(tmp_path):
    """The full-length precision table from planted records: a net's fp32 runs (Table 6's, group main, and any
    group fp32) against its bf16 group; a main run in another precision is no fp32 arm."""
    (tmp_path / "runs").mkdir()

    def put(group, depth, seed, err, precision):
        rec = dict(_planted(depth, True, seed, err), precision=precision)
        (tmp_path / "runs" / f"{group}__resnet{depth}_s{seed}.json").write_text(json.dumps(rec))
    put("bf16", 56, 1, 0.0819, "bf16 autocast")
    assert shipped.precision_rows(tmp_path) == [] and shipped.precision_text(tmp_path) == ""
    put("main", 56, 1, 0.0700, "fp32")
    assert shipped.precision_rows(tmp_path) == [{"net": "ResNet-56", "fp32 %": "7.00", "n fp32": 1, "bf16 %": "8.19",
                                                 "n bf16": 1, "bf16 - fp32 (points)": "+1.19"}]
    for seed, e in ((1, 0.081), (2, 0.083)):
        put("bf16", 20, seed, e, "bf16 autocast")
        put("fp32", 20, seed, e - 0.001, "fp32")
    put("main", 20, 3, 0.09, "bf16 autocast")  # not an fp32 arm, wherever it lies
    rows = shipped.precision_rows(tmp_path)
    assert [r["net"] for r in rows] == ["ResNet-20", "ResNet-56"]
    assert (rows[0]["bf16 %"], rows[0]["n bf16"], rows[0]["fp32 %"]) == ("8.20 ± 0.14", 2, "8.10 ± 0.14")
    assert "| ResNet-56 | 7.00 | 1 | 8.19 | 1 | +1.19 |" in shipped.precision_text(tmp_path)


def test_paper_scale_runs_are_table6_s_own_else_the_bf16_runs_said_to_be_so(tmp_path):
    (tmp_path / "runs").mkdir()
    assert shipped.paper_scale_runs(tmp_path) == ([], "")
    (tmp_path / "runs" / "bf16__resnet20_s1.json").write_text(json.dumps(
        dict(_planted(20, True, 1, 0.08), precision="bf16 autocast")))
    runs, note = shipped.paper_scale_runs(tmp_path)
    assert len(runs) == 1 and "not trained yet" in note and "bf16" in note
    (tmp_path / "runs" / "main__resnet20_s1.json").write_text(json.dumps(
        dict(_planted(20, True, 1, 0.075), precision="fp32")))
    runs, note = shipped.paper_scale_runs(tmp_path)
    assert [r["precision"] for r in runs] == ["fp32"] and note.startswith("Runs in fp32")


def test_resnet1202_cost_is_measured_in_a_fresh_process():
    """The machinery on a small net (ResNet-1202 itself takes seconds on a CPU: notebook 03 runs it)."""
    cost = cost1202.resnet1202_cost("cpu", iters=1, batch_size=2, depth=8)
    assert cost["net"] == "ResNet-8" and cost["ms_per_iter_b128"] > 0 and cost["scaled_from_smaller_batch"]
    assert cost["params"] == count_params(cifar_resnet(8))  # counted in the measuring process
    assert cost["hours_for_64k"] == round(cost["ms_per_iter_b128"] * 64_000 / 3.6e6, 1)
    assert "64k iterations" in cost1202.resnet1202_text(cost)


def test_a_run_that_diverges_is_set_aside_and_the_others_go_on(data, tmp_path, monkeypatch):
    """A diverged job (planted: its loss bar set to 0) is recorded with its reason and not retried; the job
    beside it in the other lane finishes; a later call says so and trains nothing more."""
    made = cp.job_trainer

    def planted(job, *a, **kw):
        t = made(job, *a, **kw)
        if t is not None and job.runs[0].residual:
            t.cfg = dataclasses.replace(t.cfg, diverge_loss=0.0)
        return t

    monkeypatch.setattr(cp, "job_trainer", planted)
    lines = []
    summary = cp.run_campaign("smoke", tmp_path, 1e9, data=data, device="cpu", progress=False, log=lines.append,
                              together=2, **TINY)
    [key] = summary["failed"]
    assert key.startswith("main/resnet8") and "TrainingDiverged" in summary["failed"][key]
    assert summary["count"] == {"done": 1, "in progress": 0, "left": 1}  # plain-8 finished beside it
    assert any("ResNet-8 seed 1 stopped: TrainingDiverged" in ln for ln in lines)
    again = []
    cp.run_campaign("smoke", tmp_path, 1e9, data=data, device="cpu", progress=False, log=again.append, **TINY)
    assert "0 iterations" in again[0] and "not retried" in again[0]


def test_any_other_error_stops_every_lane_with_a_checkpoint_and_is_raised(straight, data, tmp_path, monkeypatch):
    """An error that is not a divergence (planted: ResNet-8's 6th step fails) stops the run beside it with a
    checkpoint, is recorded in the calls log and raised; a later call continues and ends as straight."""
    made = cp.job_trainer

    def planted(job, *a, **kw):
        t = made(job, *a, **kw)
        if t is not None and job.runs[0].residual:
            real = t.step

            def step(x, y, end):
                if t.state.iteration == 5:
                    raise OSError("planted: the disk went away")
                real(x, y, end)
            t.step = step
        return t

    monkeypatch.setattr(cp, "job_trainer", planted)
    with pytest.raises(OSError, match="planted"):
        cp.run_campaign("smoke", tmp_path, 1e9, data=data, device="cpu", progress=False, log=None, together=2,
                        **TINY)
    state = json.loads((tmp_path / cp.STATE).read_text())
    assert state["calls"][-1]["stopped"] == "error: OSError" and not state["failed"]
    plain = next(e for e in cp.campaign_entries("smoke", **TINY) if not e.run.residual)
    assert cp.iteration_of(tmp_path, plain) in (5, 6)  # stopped beside it, with a checkpoint, not at its end
    monkeypatch.setattr(cp, "job_trainer", made)
    cp.run_campaign("smoke", tmp_path, 1e9, data=data, device="cpu", progress=False, log=None, **TINY)
    _same_runs(straight[0], tmp_path, TINY)


def test_speeds_are_kept_per_device_kind_and_precision(monkeypatch):
    """An AVX2 CPU names itself apart from a bf16 one, and each policy's runs have speeds of their own: the
    time still needed is not taken from a machine or precision 2-3x faster."""
    cpu = torch.device("cpu")
    monkeypatch.setattr(io, "cpu_has_fast_bf16", lambda: True)
    fast = device_name(cpu)
    monkeypatch.setattr(io, "cpu_has_fast_bf16", lambda: False)
    slow = device_name(cpu)
    assert fast.startswith("cpu (") and slow == fast[:-1] + ", no fast bf16)"
    fp32, bf16 = (cp.campaign_jobs("precision", seeds=(1,))[i] for i in (0, 1))
    sp = cp.Speeds({fast: [100 * 20.0, 10.0]})  # a table from before the policies: bf16 speeds, no policy in the key
    assert sp.estimate(fast, bf16) == pytest.approx(0.1) and sp.estimate(fast, fp32) is None
    sp.add(slow, fp32, 10, 4.0)
    assert sp.estimate(slow, fp32) == pytest.approx(0.4) and sp.estimate(slow, bf16) is None
    assert sorted(sp.table) == [fast, f"{slow} | fp32"]
    left = cp.summarize([fp32], {fp32.key: 900}, sp, slow)
    assert left["time_left_s"] == pytest.approx((64_000 - 900) * 0.4) and left["rows"][0]["status"] == "in progress"
    assert cp.summarize([bf16], {bf16.key: 900}, sp, slow)["time_left_s"] is None
