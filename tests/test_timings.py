"""The main job's times per kind of CPU are read from results/timings/, never typed: the README's table and
each notebook's check-cell line come from the same records."""
from __future__ import annotations

import json

from resnet_lib.runner import timings


def _record(folder, name, fast_bf16, secs, env=None, tiny=False):
    rec = {"notebooks_s": secs, "total_s": sum(secs.values()), "tiny": tiny, "cpu_model": "Test CPU", "cpus": 2,
           "cpu_path": {"fast_bf16": fast_bf16}, "load_avg_at_end": 2.0, "environment": env or {}, "git": "abc",
           "finished_utc": "2026-11-27T12:00:00Z"}
    (folder / name).write_text(json.dumps(rec))


def test_table_and_check_line_from_records(tmp_path):
    folder = tmp_path / timings.FOLDER
    folder.mkdir(parents=True)
    assert timings.readme_table(tmp_path).startswith("No timed")
    assert timings.expected_text("03_x", tmp_path) == ""
    _record(folder, "a_avx2.json", False, {"01_x": 20.0, "03_x": 330.0}, env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    _record(folder, "b_bf16.json", True, {"01_x": 10.0, "03_x": 150.0})
    _record(folder, "c_tiny.json", True, {"01_x": 1.0, "03_x": 2.0}, tiny=True)  # not a defaults run: left out
    table = timings.readme_table(tmp_path)
    head = table.splitlines()[0]
    assert head.index("bf16 path") < head.index("fp32 path (AVX2, stood in for")  # bf16 column first
    assert "| 03_x | 2.5 min | 5.5 min |" in table and "| 01_x | 10 s | 20 s |" in table
    assert "**2.7 min** | **5.8 min**" in table
    line = timings.expected_text("03_x", tmp_path)
    assert "2.5 min on the bf16 path" in line and "5.5 min on the fp32 path" in line
