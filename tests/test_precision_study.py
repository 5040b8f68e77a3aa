"""campaign.precision_study: the decision rule on planted records, the committed decision against the
default it sets, and the study's own loop (train to the cut, resume, export) on tiny runs."""
import dataclasses
import json

import pytest
import torch

from resnet_lib.base import precision as P
from resnet_lib.campaign import precision_study as ps
from resnet_lib.campaign.sets import TABLE6_PRECISION, Entry, paper_run


def _rec(net, policy, seed, err, cut=ps.CUT, device="GPU"):
    return {"net": net, "policy": policy, "seed": seed, "pieces": [{"device": device, "start": 0, "end": cut}],
            "history": {"iteration": [cut // 2, cut], "train_err": [0.5, err / 100]}, "group": policy,
            "slug": f"{net}_s{seed}"}


def _arms(policy, gap, spread=0.3):
    return [_rec(n, p, s, base + (gap if p == policy else 0) + spread * s)
            for n, base in (("ResNet-56", 23.0), ("ResNet-110", 21.0)) for p in ("fp32", policy) for s in (1, 2, 3)]


def test_a_policy_worse_beyond_the_seed_spread_in_a_deep_net_is_not_faithful():
    status, why = ps.decide(_arms("bf16", 6.0))["bf16"]
    assert status == ps.NOT_FAITHFUL and any(w.startswith("On GPU: Shown") for w in why)


def test_a_noisy_policy_does_not_pass_as_faithful_by_its_noise():
    """A gap inside a wide interval rules out no harm: bf16 seeds scattered by 3 points around a gap of -0.4 stay
    undecided (without the tolerance they would have passed as faithful), and each sentence says how far the
    interval reaches; the same kind of gap with seeds as tight as fp32's is faithful."""
    recs = [_rec(n, p, s, base + (0.2 + 3.0 * (s - 2) if p == "bf16" else 0.3 * s))
            for n, base in (("ResNet-56", 23.0), ("ResNet-110", 21.0)) for p in ("fp32", "bf16") for s in (1, 2, 3)]
    status, why = ps.decide(recs)["bf16"]
    assert status == ps.UNDECIDED and len(why) == 2
    assert all("At worst +3.08 points" in w and "more than the rule's tolerance of 1" in w for w in why)
    status, why = ps.decide(_arms("bf16", 0.1))["bf16"]
    assert status == ps.FAITHFUL and all("within the rule's tolerance of 1." in w for w in why)


def test_a_policy_within_the_spread_is_faithful_and_the_fastest_faithful_one_is_chosen():
    assert ps.decide(_arms("bf16-conv", 0.1))["bf16-conv"][0] == ps.FAITHFUL
    both = ps.decide(_arms("bf16-conv", 0.1) + [r for r in _arms("bf16", 6.0) if r["policy"] == "bf16"])
    assert ps.chosen(both, {"fp32": 10.0, "bf16": 4.0, "bf16-conv": 6.0}) == "bf16-conv"  # bf16 is faster, not faithful
    assert ps.chosen(both, {"fp32": 5.0, "bf16": 4.0, "bf16-conv": 6.0}) == "fp32"        # faithful but slower


def test_one_seed_or_a_missing_net_leaves_a_policy_undecided_and_fp32_chosen():
    one = [r for r in _arms("bf16", 6.0) if r["seed"] == 1]
    status, why = ps.decide(one)["bf16"]
    assert status == ps.UNDECIDED and "one seed" in why[0] and why[0].startswith("On GPU:")
    no110 = [r for r in _arms("bf16", 0.1) if r["net"] == "ResNet-56"]
    assert ps.decide(no110)["bf16"][0] == ps.UNDECIDED and ps.chosen(ps.decide(no110), {"bf16": 1.0}) == "fp32"


def test_runs_on_different_devices_are_not_compared():
    """fp32 on one device and bf16 on another, 6 points apart over three seeds each: no verdict, since the gap
    mixes the precision with the device; the same runs on one device decide. A run that moved between devices
    is no same-device run either."""
    arms = _arms("bf16", 6.0)
    split = [dict(r, pieces=[{"device": "CPU" if r["policy"] == "fp32" else "GPU", "start": 0, "end": ps.CUT}])
             for r in arms]
    status, why = ps.decide(split)["bf16"]
    assert status == ps.UNDECIDED and why == ["No device has trained ResNet-56 or ResNet-110 in both fp32 and bf16 yet."]
    moved = [dict(r, pieces=[{"device": "GPU", "start": 0, "end": 100}, {"device": "CPU", "start": 100, "end": ps.CUT}])
             if r["policy"] == "bf16" else r for r in arms]
    assert ps.decide(moved)["bf16"][0] == ps.UNDECIDED and ps.device_of(moved[3]) == "CPU + GPU"
    rows = ps.table_rows(split)
    assert {r["trained on"] for r in rows} == {"CPU", "GPU"} and all(r["vs fp32 on that device (points)"] == ""
                                                                      for r in rows)
    assert "train err 2,000-4,000 (%)" in rows[0]
    assert ps.decide(arms)["bf16"][0] == ps.NOT_FAITHFUL
    # the same net, seed and policy on two devices: named, with the gap, and outside the rule
    twice = arms + [dict(r, pieces=[{"device": "CPU", "start": 0, "end": ps.CUT}],
                         history={"iteration": [ps.CUT // 2, ps.CUT], "train_err": [0.5, 0.20]})
                    for r in arms if r["net"] == "ResNet-56" and r["policy"] == "bf16" and r["seed"] == 1]
    assert ps.across_devices(twice) == ["- ResNet-56, seed 1, bf16, on 2 devices: 20.00% on CPU, 29.30% on GPU "
                                        "(9.30 points apart: the same seed and policy, so this gap is the devices' "
                                        "arithmetic and code paths, one seed; not counted by the rule)."]
    assert ps.across_devices(arms) == []


def test_all_records_gathers_every_export_folder_once(tmp_path):
    import json
    for folder, recs in (("runs", _arms("bf16", 0.0)[:4]), ("cpu/runs", _arms("bf16", 0.0)[2:6])):
        (tmp_path / folder).mkdir(parents=True)
        for i, r in enumerate(recs):
            (tmp_path / folder / f"{i}.json").write_text(json.dumps(r))
    assert len(ps.all_records(tmp_path)) == 6  # records 2 and 3 are in both folders


def test_the_default_is_what_the_committed_study_decides():
    """base.precision.AUTO and the campaign's Table 6 policy follow the committed records (results/precision):
    a change of the records that changes the decision fails here until the default is changed with it."""
    records = ps.all_records()
    assert records, "results/precision holds the study's records"
    decided = ps.defaults(ps.decide(records), ps.load_costs())  # by device kind and that kind's measured cost
    assert set(decided) == {"cuda", "cpu", "cpu-bf16"} and {k: P.AUTO[k] for k in decided} == decided
    assert TABLE6_PRECISION == decided["cuda"]
    assert f"**{decided['cuda']}**" in ps.section()


def test_auto_means_the_fastest_faithful_policy_of_each_kind_of_device(monkeypatch):
    """Were bf16 faithful, "auto" would be bf16 on a CPU with fast bf16 (half fp32's step there, measured) and
    still fp32 on an AVX2-only CPU (where bf16 is emulated, ten times slower) and on a GPU with no cost measured;
    and a CPU resolves "auto" by its kind."""
    decision = {"bf16": (ps.FAITHFUL, []), "bf16-conv": (ps.UNDECIDED, [])}
    costs = ps.load_costs()
    assert {ps.cost_kind(c) for c in costs} >= {"cpu", "cpu-bf16"}  # both committed CPU cost runs
    assert ps.defaults(decision, costs) == {"cuda": "fp32", "cpu-bf16": "bf16", "cpu": "fp32"}
    assert ps.defaults({"bf16": (ps.UNDECIDED, [])}, costs) == dict.fromkeys(ps.KINDS, "fp32")
    text = ps.decision_text(_arms("bf16", 0.1), costs=costs)  # faithful in planted records: the sentence follows
    assert text.endswith("**fp32** on a GPU; **bf16** on a CPU with fast bf16; **fp32** on a CPU without.")
    assert "**fp32** on every device" in ps.decision_text(_arms("bf16", 0.1), costs=[])  # nothing measured faster
    monkeypatch.setitem(P.AUTO, "cpu-bf16", "bf16")
    monkeypatch.setattr(P, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    for cap, want in (("DEFAULT", "bf16"), ("AVX2", "fp32")):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert P.auto_key(torch.device("cpu")) == ("cpu-bf16" if want == "bf16" else "cpu")
        assert P.resolve(torch.device("cpu"), "auto").name == want


def test_the_study_trains_each_run_to_the_cut_resumes_and_exports(tmp_path):
    from resnet_lib.data.cifar import Cifar10
    g = torch.Generator().manual_seed(0)
    x = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)  # noqa: E731
    data = Cifar10(x(256), torch.arange(256) % 10, x(64), torch.arange(64) % 10)
    # ResNet-8 on a 1/1000 schedule (64 iterations, a curve point every 2), batch 32
    entries = [Entry(dataclasses.replace(r := paper_run(8, True, 1, 0.001, 0, 0, p),
                                         train=dataclasses.replace(r.train, batch_size=32)),
                     "main" if p == TABLE6_PRECISION else p)  # the campaign's groups
               for p in ("fp32", "bf16-conv")]
    assert ps.run_study(tmp_path, cut=4, entries=entries, budget_s=0, device="cpu", progress=False, log=None,
                        data=data) == {e.key: 0 for e in entries}  # no budget: nothing trains
    reached = ps.run_study(tmp_path, cut=4, entries=entries, device="cpu", progress=False, log=None, data=data)
    assert set(reached.values()) == {4}
    reached = ps.run_study(tmp_path, cut=8, entries=entries, device="cpu", progress=False, log=None, data=data)
    assert set(reached.values()) == {8}  # continued from the checkpoints at 4
    recs = [ps.record(tmp_path, e) for e in ps.stored_entries(tmp_path)]
    assert sorted(r["policy"] for r in recs) == ["bf16-conv", "fp32"]
    assert all(r["history"]["iteration"] == [2, 4, 6, 8] and r["pieces"][-1]["end"] == 8 for r in recs)
    dest = ps.export(tmp_path, dest=tmp_path / "results" / "runs", cut=8, note="fp32 restored from elsewhere")
    assert len(list(dest.glob("*.json"))) == 2 and (dest.parent / "early_error_by_depth.png").stat().st_size > 0
    assert json.loads((dest.parent / "provenance.json").read_text())["note"] == "fp32 restored from elsewhere"
    assert set(ps.early_errors(ps.load_records(dest), cut=8)) == {("ResNet-8", "fp32"), ("ResNet-8", "bf16-conv")}
    with pytest.raises(ValueError, match="cut must be"):
        ps.run_study(tmp_path, cut=10**6, entries=entries, device="cpu", progress=False, log=None, data=data)


def test_an_eager_gpu_run_is_a_code_path_of_its_own_and_a_cpu_run_is_not():
    """Issue #25's lead (the same seed in bf16: 5.7 points apart between an H100, graphed, and a CPU): a GPU
    run without the CUDA graph is its own device in the table and the rule, named "(eager)", so that graphed
    and eager runs are compared as two code paths; on a CPU every run is eager, so nothing is added."""
    gpu = {"device": "NVIDIA H100 80GB HBM3", "start": 0, "end": ps.CUT}
    rec = lambda graph, piece: {"pieces": [piece], "identity": {"train": {"cuda_graph": graph}}}  # noqa: E731
    assert ps.device_of(rec("auto", gpu)) == "H100 80GB HBM3"
    assert ps.device_of(rec("off", gpu)) == "H100 80GB HBM3 (eager)"
    assert ps.device_of(rec("off", {"device": "cpu (x86_64, 2 threads)", "start": 0, "end": ps.CUT})) == \
        "cpu (x86_64, 2 threads)"
    arms = [dict(r, pieces=[gpu]) for r in _arms("bf16", 0.1) if r["net"] == "ResNet-56" and r["seed"] == 1]
    eager = [dict(r, identity={"train": {"cuda_graph": "off"}},
                  history={"iteration": [ps.CUT // 2, ps.CUT], "train_err": [0.5, 0.2]}) for r in arms]
    assert {r["trained on"] for r in ps.table_rows(arms + eager)} == {"H100 80GB HBM3", "H100 80GB HBM3 (eager)"}
    assert any("on H100 80GB HBM3 (eager)" in line for line in ps.across_devices(arms + eager))
    graphed, plain = ps.study_entry("ResNet-56", 1, "bf16", "eager"), ps.study_entry("ResNet-56", 1, "bf16")
    assert graphed.run.train.cuda_graph == "off" and plain.run.train.cuda_graph == "auto"
    assert graphed.run.slug != plain.run.slug and graphed.group == plain.group == "bf16"
    with pytest.raises(ValueError, match="step must be"):
        ps.study_entry("ResNet-56", 1, "bf16", "graphed")


def test_depth_lines_compare_each_policy_s_resnets_on_one_device_outside_the_rule():
    """The deeper ResNet's early training error against the shallower's, per device and policy, over seeds:
    ResNet-110 planted 2 points below ResNet-56 is shown in both policies; a net with one seed gives no line;
    the decision text carries the lines and the rule's status does not change with them."""
    arms = _arms("bf16", 0.1)
    lines = ps.depth_lines(arms)
    assert len(lines) == 2 and all(": Shown:" in line for line in lines)
    assert "ResNet-110 in fp32" in lines[0] and "ResNet-110 in bf16" in lines[1]
    one = [r for r in arms if not (r["net"] == "ResNet-110" and r["seed"] > 1)]
    assert ps.depth_lines(one) == []
    assert lines[0] in ps.decision_text(arms) and ps.decide(arms)["bf16"][0] == ps.FAITHFUL


def test_the_cost_table_keeps_a_slow_cpu_s_throughput_and_names_each_device_kind():
    """16.5 img/s is not shown as 16 (nor rounded to even); a fast column keeps whole images per second; a bf16
    CPU capped with ONEDNN_MAX_CPU_ISA=AVX2 says it stands in for the slower kind."""
    slow = {"cpu_path": {"onednn_isa": "AVX2", "onednn_max_isa": "AVX2"}, "load_average_1min_at_end": 2.1,
            "rows": [{"net": "ResNet-110", "policy": "fp32", "ms_per_iter": 7757.6, "img_per_s": 16.5}]}
    fast = {"gpu": "H100", "rows": [{"net": "ResNet-110", "policy": "fp32", "ms_per_iter": 30.2, "img_per_s": 4238.4},
                                    {"net": "ResNet-20", "policy": "bf16", "ms_per_iter": 5.0, "img_per_s": 25600.0}]}
    table = ps.cost_table([slow, fast])
    head, _, r20, r110, *_ = table.splitlines()
    assert "stood in for with ONEDNN_MAX_CPU_ISA=AVX2" in head and "| H100 |" in head
    assert r110 == "| ResNet-110 | fp32 | 7758 ms (16.5 img/s) | 30 ms (4,238 img/s) |"
    assert r20 == "| ResNet-20 | bf16 |  | 5 ms (25,600 img/s) |"  # shallow nets first; a blank where a device has none


def test_paired_lines_give_each_seed_s_gap_to_fp32_on_one_device_and_skip_unpaired_seeds():
    """A planted 6-point gap shows in every seed's pair; a seed with no fp32 run of its own gives no pair; runs
    on another device are another bullet; and the decision text carries the lines."""
    arms = _arms("bf16", 6.0) + [_rec("ResNet-110", "bf16", 4, 40.0)]  # seed 4 has no fp32 partner
    other = [_rec("ResNet-56", p, 1, e, device="CPU") for p, e in (("fp32", 20.0), ("bf16", 21.5))]
    lines = ps.paired_lines(arms + other)
    assert len(lines) == 2 and lines[0].startswith("- Seed by seed, bf16 minus fp32 on CPU")
    assert lines[0].endswith(": ResNet-56 +1.50 (seed 1).")
    assert lines[1].endswith(": ResNet-56 +6.00, +6.00, +6.00 (seeds 1, 2, 3); ResNet-110 +6.00, +6.00, +6.00 (seeds 1, 2, 3).")
    assert lines[1] in ps.decision_text(arms + other, costs=[])
