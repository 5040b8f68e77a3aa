#!/usr/bin/env python3
"""Issue #30's GPU check: two campaign workers sharing one GPU finish a short set and match one worker.

  python bench/gpu_workers.py --out build/gpu_workers                      # on a GPU machine (~2 min)
  python bench/gpu_workers.py --out build/gpu_workers --device cpu --scale 0.00025 --subset 512   # the script, on a CPU

Trains the ``smoke`` set (ResNet-8 and plain-8, seeds 1 and 2, each run alone: four jobs) twice, each time
through the campaign's own command: once with one worker (``OUT/one``), once with ``--workers 2`` on the same
device (``OUT/two``: two processes, each with its own lanes, claiming jobs from one folder). Then compares every
run: its curve, its final numbers and its weights, bitwise, else the largest difference. On a GPU, lanes (runs
at once on CUDA streams) match runs alone within float rounding, not bitwise (engine.lanes), so a difference
there is reported, not hidden. Writes ``OUT/gpu_workers.jsonl`` (one line per run, then the verdict) beside the
workers' own logs (``OUT/two/workers/``) and both campaigns' ``campaign.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def campaign(out: Path, a: argparse.Namespace, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "resnet_lib", "campaign", "smoke", "--out", str(out), "--seeds", "1,2", "--no-fuse",
           "--scale", str(a.scale), "--subset", str(a.subset), "--test-subset", str(a.test_subset),
           "--device", a.device, "--budget-s", str(a.budget_s), *extra]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    (out / "command.log").write_text(" ".join(cmd) + "\n\n" + r.stdout + "\n" + r.stderr)
    return {"command": " ".join(cmd[3:]), "exit_code": r.returncode, "seconds": round(time.monotonic() - t0, 1),
            "last_lines": r.stdout.strip().splitlines()[-8:]}


def compare(one: Path, two: Path, entries) -> list[dict]:
    import torch

    from resnet_lib.campaign.progress import run_dir
    from resnet_lib.engine.checkpoint import RESULT, load_model
    rows = []
    for e in entries:
        a, b = run_dir(one, e), run_dir(two, e)
        if not ((a / RESULT).exists() and (b / RESULT).exists()):
            rows.append({"run": e.label, "finished": [(a / RESULT).exists(), (b / RESULT).exists()]})
            continue
        ra, rb = (json.loads((d / RESULT).read_text()) for d in (a, b))
        wa, wb = (load_model(d).state_dict() for d in (a, b))
        diff = max(((wa[k].double() - wb[k].double()).abs().max().item() for k in wa if wa[k].is_floating_point()),
                   default=0.0)
        rows.append({"run": e.label, "finished": [True, True], "history_equal": ra["history"] == rb["history"],
                     "final": [ra["final"], rb["final"]], "weights_equal": all(torch.equal(wa[k], wb[k]) for k in wa),
                     "max_abs_weight_diff": diff, "devices": [ra["provenance"]["device"], rb["provenance"]["device"]]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/gpu_workers")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scale", type=float, default=0.005, help="of the 64k schedule (0.005: 320 iterations)")
    ap.add_argument("--subset", type=int, default=5000)
    ap.add_argument("--test-subset", type=int, default=1000)
    ap.add_argument("--budget-s", type=float, default=240, help="each campaign's budget")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from resnet_lib.campaign.sets import campaign_entries
    out = Path(a.out)
    for d in ("one", "two"):
        (out / d).mkdir(parents=True, exist_ok=True)
    lines = [{"one_worker": campaign(out / "one", a, [])},
             {f"{a.workers}_workers": campaign(out / "two", a, ["--workers", str(a.workers)])}]
    entries = campaign_entries("smoke", (1, 2), a.scale, a.subset, a.test_subset, fuse=False)
    rows = compare(out / "one", out / "two", entries)
    done = all(r["finished"] == [True, True] for r in rows)
    bitwise = done and all(r["history_equal"] and r["weights_equal"] for r in rows)
    verdict = {"verdict": "bitwise equal" if bitwise else ("all finished, not bitwise equal: see max_abs_weight_diff"
                                                            if done else "not all runs finished"),
               "workers": a.workers, "device": a.device, "runs": len(rows)}
    with open(out / "gpu_workers.jsonl", "w") as f:
        for line in [*lines, *rows, verdict]:
            print(json.dumps(line))
            f.write(json.dumps(line) + "\n")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
