"""The main job's times per kind of CPU are read from results/timings/, never typed: the time table of docs/speed.md and
each notebook's check-cell line come from the same records, and only while the notebook's defaults are the
ones a record was measured with."""
from __future__ import annotations

import json

from resnet_lib.runner import timings
from resnet_lib.runner.params import find_notebook_file, read_parameters

NB1, NB3 = "01_residual_learning", "03_cifar10_plain_vs_residual"
NOW = {nb: read_parameters(find_notebook_file(nb)) for nb in (NB1, NB3)}


def _record(folder, name, fast_bf16, secs, env=None, tiny=False, params=None):
    params = params or {nb: NOW[nb] for nb in secs}
    rec = {"notebooks_s": secs, "total_s": sum(secs.values()), "tiny": tiny, "cpu_model": "Test CPU", "cpus": 2,
           "cpu_path": {"fast_bf16": fast_bf16}, "load_avg_at_end": 2.0, "environment": env or {}, "git": "abc",
           "finished_utc": "2026-11-27T12:00:00Z", "parameters": params}
    (folder / name).write_text(json.dumps(rec))


def test_table_and_check_line_from_records(tmp_path):
    folder = tmp_path / timings.FOLDER
    folder.mkdir(parents=True)
    assert timings.readme_table(tmp_path, NOW).startswith("No timed")
    assert timings.expected_text(NB3, NOW[NB3], tmp_path) == ""
    _record(folder, "a_avx2.json", False, {NB1: 20.0, NB3: 330.0}, env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    _record(folder, "b_bf16.json", True, {NB1: 10.0, NB3: 150.0})
    _record(folder, "c_tiny.json", True, {NB1: 1.0, NB3: 2.0}, tiny=True)  # not a defaults run: left out
    table = timings.readme_table(tmp_path, NOW)
    head = table.splitlines()[0]
    assert head.index("bf16 path") < head.index("fp32 path (AVX2, stood in for")  # bf16 column first
    assert f"| {NB3} | 2.5 min | 5.5 min |" in table and f"| {NB1} | 10 s | 20 s |" in table
    assert "**2.7 min** (2 notebooks) | **5.8 min** (2 notebooks)" in table
    _record(folder, "a_avx2.json", False, {NB1: 20.0, NB3: 330.0, "08_appendix_workshop": 15.0},
            env={"ONEDNN_MAX_CPU_ISA": "AVX2"}, params={NB1: NOW[NB1], NB3: NOW[NB3], "08_appendix_workshop": {}})
    table = timings.readme_table(tmp_path, NOW)  # a notebook one run timed and the other did not
    assert "| 08_appendix_workshop | not in this run |" in table and "(3 notebooks)" in table
    line = timings.expected_text(NB3, NOW[NB3], tmp_path)
    assert "2.5 min on the bf16 path" in line and "5.5 min on the fp32 path" in line


def test_a_time_measured_with_other_defaults_is_not_shown(tmp_path):
    folder = tmp_path / timings.FOLDER
    folder.mkdir(parents=True)
    old = {NB1: NOW[NB1], NB3: {**NOW[NB3], "ITERS": 1}}
    _record(folder, "a_bf16.json", True, {NB1: 10.0, NB3: 150.0}, params=old)
    assert "10 s on the bf16 path" in timings.expected_text(NB1, NOW[NB1], tmp_path)
    assert timings.expected_text(NB3, NOW[NB3], tmp_path) == ""  # measured with ITERS=1, not today's default
    assert f"| {NB3} | defaults changed since: measure again |" in timings.readme_table(tmp_path, NOW)
