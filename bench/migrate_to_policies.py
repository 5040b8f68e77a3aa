"""One-off (issue #25): rewrite a campaign folder made before precision policies into the new layout.

Before, a run's identity held ``train.amp`` ("auto", "off", "bf16"), and "auto" meant whatever the machine
chose; now it holds ``train.precision``, a named policy, and the policy decides the run's group ("main" is
Table 6's policy, ``campaign_sets.TABLE6_PRECISION``; another policy's runs are the precision study's, in the
group named after it). Every "auto" run of this project trained in bf16 autocast (GPUs, and CPUs with fast
bf16), which each run's ``pieces`` confirm where they record a precision; this script refuses a run whose
pieces say otherwise. Each migrated run is rebuilt as the new code's ``CifarRun`` with the identical
identity, so its folder is exactly where the campaign and the precision study look for it. Nothing is trained; the
arrays are copied unchanged.

    python bench/migrate_to_policies.py DIR        # DIR: an unpacked campaign folder (campaign.json, runs/)
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

from resnet_lib.base.io import atomic_write_json
from resnet_lib.engine import checkpoint as ck
from resnet_lib.engine.config import TrainConfig
from resnet_lib.experiments.campaign_sets import TABLE6_PRECISION, Entry
from resnet_lib.experiments.cifar_runs import CifarRun

OLD = {"off": "fp32", "bf16": "bf16"}


def policy_of(amp: str, pieces: list[dict]) -> str:
    if amp in OLD:
        return OLD[amp]
    said = {p.get("precision") for p in pieces if p.get("precision")}
    if said - {"bf16 autocast"}:
        raise SystemExit(f"an 'auto' run whose pieces record {said}: migrate it by hand")
    return "bf16"


def entry_of(identity: dict) -> Entry:
    """The run the new code plans for ``identity`` (rebuilt from it, and checked to have exactly it)."""
    spec, train = identity["spec"], dict(identity["train"], milestones=tuple(identity["train"]["milestones"]))
    run = CifarRun(spec["depth"], spec["residual"], spec["shortcut"], TrainConfig(**train), **identity["data"])
    if run.identity != identity:
        raise SystemExit(f"cannot rebuild the run of {identity}")
    return Entry(run, "main" if run.train.precision == TABLE6_PRECISION else run.train.precision)


def main(folder: Path) -> None:
    for d in sorted((folder / "runs").glob("*/*")):
        ckpt_path, result_path = d / ck.CHECKPOINT, d / ck.RESULT
        if result_path.exists():
            result = json.loads(result_path.read_text())
            identity, pieces = result["identity"], result.get("pieces", [])
        else:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            identity, pieces = ckpt["identity"], ckpt["state"].get("pieces", [])
        train = identity["train"]
        if "precision" in train:
            print(f"{d.relative_to(folder)}: already migrated")
            continue
        train["precision"] = policy_of(train.pop("amp"), pieces)
        e = entry_of(identity)
        new = folder / "runs" / e.group / e.run.slug
        new.mkdir(parents=True, exist_ok=False)
        if result_path.exists():
            result["config"]["precision"] = result["config"].pop("amp")
            result["config"]["precision"] = train["precision"]
            atomic_write_json(new / ck.RESULT, {**result, "identity": e.run.identity})
        if ckpt_path.exists():
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            ck.save_checkpoint(new, {**{k: v for k, v in ckpt.items() if k != "format"}, "identity": e.run.identity})
        shutil.rmtree(d)
        print(f"{d.relative_to(folder)} -> {new.relative_to(folder)} ({train['precision']})")
    for g in (folder / "runs").iterdir():
        if g.is_dir() and not any(g.iterdir()):
            g.rmdir()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
