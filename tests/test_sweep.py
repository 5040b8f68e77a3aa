"""The papermill sweep: grid parsing, checks before anything runs, gathering into one table and
figure (on hand-made points, in milliseconds), and one real tiny sweep of notebook 03:
2 depths x plain/residual x 2 seeds from one command, not re-run when done, re-run with force."""
from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from resnet_lib.runner import notebooks, sweep, sweep_grid, sweep_tables

# ---------------------------------------------------------------- the grid

def test_parse_grid_reads_literals():
    grid = sweep_grid.parse_grid(["DEPTHS=20,56", "PLAIN=true,False", "LR=0.1", "NETS=plain,'resnet'",
                             "PAIRS=[20,56],[110]", "DEVICE=cpu"])
    assert grid == {"DEPTHS": [20, 56], "PLAIN": [True, False], "LR": [0.1], "NETS": ["plain", "resnet"],
                    "PAIRS": [[20, 56], [110]], "DEVICE": ["cpu"]}


@pytest.mark.parametrize("spec, message", [("SEED", "NAME=V1,V2"), ("SEED=", "NAME=V1,V2"),
                                           ("1X=2", "NAME=V1,V2")])
def test_parse_grid_rejects_malformed(spec, message):
    with pytest.raises(ValueError, match=message):
        sweep_grid.parse_grid([spec])


def test_parse_grid_rejects_repeated_axis():
    with pytest.raises(ValueError, match="given twice"):
        sweep_grid.parse_grid(["SEED=0", "SEED=1"])


def test_scalars_fill_list_parameters_and_names_say_the_point():
    fitted = sweep_grid.fit_to_defaults({"DEPTHS": [20, 56], "SEED": 0}, {"DEPTHS": 20, "SEED": 1})
    assert fitted == {"DEPTHS": [20], "SEED": 1}
    assert sweep_grid.point_name({"DEPTHS": [20, 56], "PLAIN": True, "NETS": "res net/x"}) == \
        "DEPTHS=20-56_PLAIN=true_NETS=res-net-x"
    assert [p["SEED"] for p in sweep_grid.expand({"DEPTH": [20, 56], "SEED": [0, 1]})] == [0, 1, 0, 1]


def test_seed_axes_default_and_explicit():
    grid = {"DEPTHS": [20], "SEED": [0, 1], "DATA_SEED": [3]}
    assert sweep_grid.seed_axes(grid) == ["SEED", "DATA_SEED"]
    assert sweep_grid.seed_axes(grid, ["DEPTHS"]) == ["DEPTHS"]
    with pytest.raises(ValueError, match="not a grid axis"):
        sweep_grid.seed_axes(grid, ["EPOCHS"])


# ---------------------------------------------------------------- checks before running

NB03 = "03_cifar10_plain_vs_residual"
needs_03 = pytest.mark.skipif(not any(nb.stem == NB03 for nb in notebooks.list_notebooks()),
                              reason="notebook 03 not in notebooks/")


@needs_03
@pytest.mark.parametrize("grid, message", [
    ({"DEPTH": [8]}, "unknown parameter 'DEPTH'"),
    ({"SEEDS": [[0, "one"]]}, "SEEDS holds int values"),
    ({"DEPTHS": [8, "deep"]}, "DEPTHS holds int values"),
    ({"FORCE": [1]}, "FORCE should be bool"),
])
def test_bad_parameters_fail_before_any_run(tmp_path, grid, message):
    with pytest.raises(ValueError, match=message):
        sweep.run_sweep(NB03, grid, tmp_path, tiny=True, progress=False)
    assert not (tmp_path / "executed").exists()  # nothing started


@needs_03
def test_cli_reports_bad_parameters_without_traceback(tmp_path, capsys):
    assert sweep.cli(["03", "-g", "DEPTHS=8", "-p", "EPOCS=1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'EPOCS'" in err and "Traceback" not in err


# ---------------------------------------------------------------- gathering (no notebook runs)

def _fake_point(out: Path, stem: str, params: dict, test_err: float, train_err: float) -> None:
    """What a finished point leaves behind, shaped like notebook 03's results.json."""
    pdir = out / "points" / sweep_grid.point_name(params)
    net = f"{'ResNet' if params['NETS'] == 'resnet' else 'plain'}-{params['DEPTHS']}"
    res = {"name": stem, "provenance": {}, "wall_s_total": 5.0,
           "rows": [{"quantity": f"{net} test error", "ours": test_err, "paper": 8.75, "unit": "%", "note": ""}],
           "table": [{"net": net, "depth": params["DEPTHS"], "residual": params["NETS"] == "resnet",
                      "train_err_pct": train_err, "test_err_pct": test_err, "paper_test_err_pct": 8.75,
                      "iters": 8}]}
    (pdir / stem).mkdir(parents=True)
    (pdir / stem / "results.json").write_text(json.dumps(res))
    (pdir / "point.json").write_text(json.dumps({"params": params}))


def test_gather_means_spread_and_figure(tmp_path):
    grid = {"DEPTHS": [20, 56], "NETS": ["plain", "resnet"], "SEED": [0, 1, 2]}
    values = {}
    for i, p in enumerate(sweep_grid.expand(grid)):
        test_err = 10 + p["DEPTHS"] / 10 + (p["NETS"] == "plain") * 5 + p["SEED"] * 0.5
        values.setdefault((p["DEPTHS"], p["NETS"]), []).append(test_err)
        _fake_point(tmp_path, "03_x", p, test_err, train_err=test_err - 3)
    table, figure = sweep_tables.gather(tmp_path, "03_x", grid)
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    err = {(int(r["DEPTHS"]), r["NETS"]): r for r in rows if r["quantity"] == "test_err_pct"}
    assert len(err) == 4
    for key, vals in values.items():
        assert float(err[key]["mean"]) == pytest.approx(statistics.fmean(vals))
        assert float(err[key]["std"]) == pytest.approx(statistics.stdev(vals))
        assert err[key]["n"] == "3" and float(err[key]["paper"]) == 8.75 and err[key]["unit"] == "%"
    assert not any(r["quantity"] == "depth" for r in rows)  # restates the grid axis: not a quantity
    assert any(r["quantity"] == "ResNet-56 test error" for r in rows)  # the notebook's own rows too
    assert any(r["quantity"] == "wall_s_total" for r in rows)  # top-level numbers too
    long = list(csv.DictReader(open(tmp_path / "sweep_runs.csv")))
    assert len([r for r in long if r["quantity"] == "test_err_pct"]) == 12
    assert "| DEPTHS | NETS |" in table.read_text()
    assert figure.exists() and figure.stat().st_size > 20_000


def test_plot_panels_prefer_curves_over_constants(tmp_path):
    grid = {"DEPTHS": [20, 56], "NETS": ["plain", "resnet"], "SEED": [0, 1]}
    for p in sweep_grid.expand(grid):
        _fake_point(tmp_path, "03_x", p, 10 + p["DEPTHS"] / 10 + p["SEED"], 5.0 + p["SEED"])
    records = sweep_tables.collect(tmp_path, "03_x", grid)
    chosen = sweep_tables._by_coverage([r for r in records if sweep_tables._is_number(r["ours"])], grid, ["SEED"])
    assert chosen[:2] == ["train_err_pct", "test_err_pct"]
    assert "iters" not in chosen  # the same at every point
    assert not any("ResNet-20" in q for q in chosen)  # one setting only: no curve


def test_gather_without_points_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the sweep first"):
        sweep_tables.gather(tmp_path, "03_x", {"SEED": [0]})


# ---------------------------------------------------------------- one real sweep

@needs_03
@pytest.mark.notebook
def test_tiny_sweep_of_03_from_one_command(tmp_path, capsys):
    """Acceptance: 2 depths x plain/residual x 2 seeds with tiny parameters, one command. Each point trains
    both kinds of net (the notebook's NETS), so the grid is 2 depths x 2 seeds: 4 papermill runs, not 8
    (each costs about 25 s on CI's CPU, most of it the kernel and imports). The notebook takes a list of seeds
    (SEEDS); a sweep over seeds gives each point one of them."""
    argv = ["03", "-g", "DEPTHS=8,14", "-g", "SEEDS=[0],[1]", "--tiny", "--out", str(tmp_path)]
    assert sweep.cli(argv) == 0
    assert "ran 4, already done 0, failed 0" in capsys.readouterr().out
    executed = sorted(p.name for p in (tmp_path / "executed").glob("*.ipynb"))
    assert len(executed) == 4 and f"{NB03}__DEPTHS=14_SEEDS=1.ipynb" in executed
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    err = [r for r in rows if r["quantity"] == "test_err_pct"]
    assert sorted(r["run"] for r in err) == ["ResNet-14/test", "ResNet-8/test", "plain-14/test", "plain-8/test"]
    assert all(r["n"] == "2" for r in err)
    assert all(0 <= float(r["mean"]) <= 100 and float(r["std"]) >= 0 for r in err)
    assert (tmp_path / "sweep.md").exists() and (tmp_path / "sweep.png").stat().st_size > 20_000

    assert sweep.cli(argv) == 0  # done points are not run again (--force: test_failed_point_is_reported...)
    assert "ran 0, already done 4" in capsys.readouterr().out


def _small_notebook(folder: Path) -> Path:
    """A two-second notebook that fails when SEED == 1 (no torch: it writes results.json itself)."""
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    params = nbformat.v4.new_code_cell('SEED = 0  # seed\nFORCE = False  # retrain\nOUT_DIR = "../outputs"  # out')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import json, pathlib\n"
        "assert SEED != 1, 'planted failure at SEED=1'\n"
        "p = pathlib.Path(OUT_DIR, '99_small'); p.mkdir(parents=True, exist_ok=True)\n"
        "rows = [{'quantity': 'err', 'ours': 10.0 + SEED, 'paper': 9.0, 'unit': '%', 'note': ''},\n"
        "        {'quantity': 'forced', 'ours': int(FORCE), 'paper': None, 'unit': '', 'note': ''}]\n"
        "(p / 'results.json').write_text(json.dumps({'name': '99_small', 'rows': rows}))")]
    path = folder / "99_small.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.notebook
def test_failed_point_is_reported_and_others_kept(tmp_path, capsys):
    nb = _small_notebook(tmp_path)
    out = tmp_path / "sweep"
    assert sweep.cli([str(nb), "-g", "SEED=0,1", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "FAILED SEED=1" in captured.err and "planted failure" in captured.err
    assert "ran 1, already done 0, failed 1" in captured.out
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [(r["quantity"], r["mean"], r["n"]) for r in rows if r["quantity"] == "err"] == [("err", "10.0", "1")]
    # --force runs a finished point again and passes FORCE=True; without it, a done point is skipped
    result = sweep.run_sweep(nb, {"SEED": [0]}, out, force=True, progress=False)
    assert result["ran"] == ["SEED=0"]
    forced = json.loads((out / "points" / "SEED=0" / "99_small" / "results.json").read_text())
    assert forced["rows"][1]["ours"] == 1
    assert sweep.run_sweep(nb, {"SEED": [0]}, out, progress=False)["skipped"] == ["SEED=0"]
