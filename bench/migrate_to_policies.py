"""One-off (issue #25): rewrite a campaign folder made before precision policies into the new layout.

Before, a run's identity held ``train.amp`` ("auto", "off", "bf16"), and "auto" meant whatever the machine
chose; now it holds ``train.precision``, a named policy, and the policy decides the run's group ("main" is
Table 6's policy, ``campaign.sets.TABLE6_PRECISION``; another policy's runs are the precision study's, in the
group named after it). Every "auto" run of this project trained in bf16 autocast (GPUs, and CPUs with fast
bf16), which each run's ``pieces`` confirm where they record a precision; this script refuses a run whose
pieces say otherwise. Each migrated run is rebuilt as the new code's ``CifarRun`` with the identical
identity, so its folder is exactly where the campaign and the precision study look for it. Nothing is trained; the
arrays are copied unchanged.

    python bench/migrate_to_policies.py DIR        # DIR: an unpacked campaign folder (campaign.json, runs/)
    python bench/migrate_to_policies.py --shipped results/cifar10   # the exported records, likewise regrouped
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

from resnet_lib.base.io import atomic_write_json
from resnet_lib.base.precision import POLICIES
from resnet_lib.campaign.precision_study import entry_of
from resnet_lib.engine import checkpoint as ck

OLD = {"off": "fp32", "bf16": "bf16"}


def policy_of(amp: str, pieces: list[dict]) -> str:
    if amp in OLD:
        return OLD[amp]
    said = {p.get("precision") for p in pieces if p.get("precision")}
    if said - {"bf16 autocast"}:
        raise SystemExit(f"an 'auto' run whose pieces record {said}: migrate it by hand")
    return "bf16"


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


def shipped(folder: Path) -> None:
    """The exported records (``experiments.shipped``: ``runs/<group>__<slug>.json``) regrouped and renamed the
    same way; their ``config`` gains ``precision`` for ``amp``."""
    for path in sorted((folder / "runs").glob("*__*.json")):
        rec = json.loads(path.read_text())
        cfg = rec["config"]
        if "precision" in cfg:
            continue
        cfg["precision"] = policy_of(cfg.pop("amp"), rec.get("pieces") or [])
        if rec.get("precision") != POLICIES[cfg["precision"]].label:
            raise SystemExit(f"{path}: records {rec.get('precision')!r}, not {cfg['precision']}")
        train = {k: v for k, v in cfg.items() if k not in ck.EXECUTION_ONLY}
        spec = rec["spec"]
        data = {k: v for k, v in rec["run"].items() if k not in ("depth", "residual", "shortcut")}
        e = entry_of({"spec": spec, "train": train, "data": data})
        rec.update(group=e.group, slug=e.run.slug)
        atomic_write_json(path.with_name(f"{e.group}__{e.run.slug}.json"), rec)
        path.unlink()
        print(f"{path.name} -> {e.group}__{e.run.slug}.json")
    # Fig. 7's responses name the run of each net by slug: the new slug (same readable prefix, same run)
    responses = folder / "responses.json"
    if responses.exists():
        data = json.loads(responses.read_text())
        slugs = {p.name.split("__", 1)[1][:-5] for p in (folder / "runs").glob("*__*.json")}
        for net in data["nets"].values():
            if net.get("slug") and net["slug"] not in slugs:
                (new,) = [s for s in slugs if s.rsplit("-", 1)[0] == net["slug"].rsplit("-", 1)[0]]
                print(f"responses.json: {net['slug']} -> {new}")
                net["slug"] = new
        atomic_write_json(responses, data)


if __name__ == "__main__":
    shipped(Path(sys.argv[2])) if sys.argv[1] == "--shipped" else main(Path(sys.argv[1]))
