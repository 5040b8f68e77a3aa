"""Notebook 03 end to end with tiny parameters, and its bad-parameter paths."""
import pytest

from resnet_lib.runner import notebooks

NB = "03_cifar10_plain_vs_residual"


@pytest.mark.notebook
def test_notebook_03_tiny_run_saves_its_table(run_tiny, nb_out):
    res = run_tiny(NB)
    names = [t["net"] for t in res["table"]]
    assert names == ["plain-8", "ResNet-8", "plain-14", "ResNet-14"] * 2  # two seeds each
    for t in res["table"]:
        assert 0 <= t["train_err_pct"] <= 100 and 0 <= t["test_err_pct"] <= 100
        assert t["iters"] == 8 and t["train_images"] == 500
    assert res["table"][1]["params"] == 75290  # 6n+2 with n=1, option A
    # 8 iterations learn nothing: every claim on this run is refused because its nets are near chance
    assert [v["status"] for v in res["verdicts"]] == ["not shown"] * 3
    assert all("within 5 points of chance" in v["text"] for v in res["verdicts"])
    # the shipped quarter-schedule runs show the degradation and the shortcuts' cure
    q = {v["better"] + ">" + v["worse"]: v for v in res["quarter_verdicts"]}
    assert q["plain-20>plain-56"]["status"] == "shown" and q["ResNet-56>plain-56"]["status"] == "shown"
    assert "spread over seeds is not measured" in q["plain-20>plain-56"]["text"]
    assert res["parameters"]["PRECISION"] == "auto"  # the precision parameter is recorded with the results
    qs = [r["quantity"] for r in res["rows"]]
    assert "ResNet-14 test error" in qs and "ResNet-14 parameters" in qs
    for fig in ("fig6_curves", "fig6_quarter_schedule", "fig1_quarter_schedule", "fig6_paper_scale"):
        assert (nb_out / NB / f"{fig}.png").stat().st_size > 10_000
    # stored runs are reused: a second run of the notebook trains nothing and gives the same table
    again = run_tiny(NB)
    assert again["table"] == res["table"]


@pytest.mark.notebook
def test_unknown_parameter_value_stops_the_notebook_early(tmp_path):
    import papermill as pm
    nb = notebooks.find_notebook(NB)
    with pytest.raises(pm.PapermillExecutionError, match="shortcut option 'D'"):
        notebooks.run_notebook(nb, tmp_path, params={"SHORTCUT": "D"}, tiny=True, progress=False)
    assert not (tmp_path / NB / "runs").exists()  # nothing trained


def test_unknown_parameter_name_or_type_is_refused_before_starting(tmp_path):
    nb = notebooks.find_notebook(NB)
    with pytest.raises(ValueError, match="unknown parameter 'DEPTH'.*did you mean|unknown parameter 'DEPTH'"):
        notebooks.run_notebook(nb, tmp_path, params={"DEPTH": 20})
    with pytest.raises(ValueError, match="LR should be float"):
        notebooks.run_notebook(nb, tmp_path, params={"LR": "many"})
    assert not (tmp_path / "executed").exists()


def test_summary_table_escapes_pipes(tmp_path):
    from resnet_lib.base.io import save_results
    save_results(tmp_path, "demo", rows=[{"quantity": "max |f(x) - x|", "ours": 0.5, "paper": None, "unit": "%",
                                          "note": "a|b"}])
    lines = notebooks.gather_summary(tmp_path).read_text().splitlines()
    row = [ln for ln in lines if ln.startswith("| demo")][0]
    assert row.count("|") - row.count("\\|") == 6  # five cells, however many pipes they hold
    assert "0.5" in row and "max \\|f(x) - x\\| (%)" in row


def test_amp_parameter_reaches_every_run():
    from resnet_lib.experiments.cifar_grid import plan_runs
    assert {r.train.precision for r in plan_runs([8, 14], iters=8, precision="off")} == {"fp32"}


def test_a_45k_5k_run_reports_validation_error_not_test_error():
    from resnet_lib.experiments.cifar_grid import error_set, paper_rows
    assert error_set({"eval_set": "val5k"}) == "validation" and error_set({"eval_set": "test10k"}) == "test"
    row = {"net": "ResNet-20", "depth": 20, "residual": True, "params": 1, "iters": 8, "train_images": 45000,
           "train_err_pct": 1.0, "test_err_pct": 2.0, "error_set": "validation", "paper_test_err_pct": 8.75}
    [err, _] = paper_rows([row])
    assert err["quantity"] == "ResNet-20 validation error" and "validation split" in err["note"]


@pytest.mark.notebook
def test_appendix_08_renders_the_workshop(run_tiny, nb_out):
    """Notebook 03's workshop (calibration, precision, provenance, ResNet-1202's cost) lives in notebook 08."""
    res = run_tiny("08_appendix_workshop")
    rows = {r["quantity"]: r for r in res["rows"]}
    assert 0 < rows["ResNet-20 test error, full recipe (H200 log)"]["ours"] < 20
    assert rows["ResNet-1202 training time for 64k iterations here"]["ours"] > 0
    assert res["calibration"] and all("seed" in r for r in res["calibration"])


def test_two_records_of_resnet20_are_set_beside_the_seed_spread():
    from resnet_lib.runner import readme
    log = readme.full_recipe_run()
    rec = lambda err: [{"name": "ResNet-20", "seed": 1, "gpu": "NVIDIA H200", "precision": "bf16 autocast",  # noqa: E731
                        "config": {"iters": log["iters"]}, "final": {"test_err": err}}]
    near = readme.resnet20_two_runs(rec(log["final"]["test_err"] + 0.001))
    assert "differ by 0.10 points" in near and "within twice it" in near
    far = readme.resnet20_two_runs(rec(log["final"]["test_err"] + 0.01))
    assert "differ by 1.00 points" in far and "beyond twice it" in far
    assert readme.resnet20_two_runs([]) == ""
