"""Section 4.2's single CIFAR-10 runs: a run's description, its folder, training it (or reusing it),
listing finished runs, and the ``train`` command line."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..base.device import pick_device
from ..base.io import atomic_write_json
from ..base.paths import output_dir
from ..data.cifar import NORMALIZATIONS, TensorLoader, load_cifar10, make_loaders, stratified_indices
from ..engine.checkpoint import CHECKPOINT, RESULT
from ..engine.config import TrainConfig
from ..engine.loop import fit
from ..engine.step import resolve_formats
from ..models.cifar import CifarNetSpec, cifar_resnet


@dataclass(frozen=True)
class CifarRun:
    """One CIFAR-10 experiment of Section 4.2: a net, its data, its recipe."""
    depth: int = 20
    residual: bool = True
    shortcut: str = "A"
    train: TrainConfig = field(default_factory=TrainConfig)
    subset: int = 0                    # 0: all 50k training images; else a stratified subset
    val_split: bool = False            # True: 45k train / 5k validation, as the paper chose its schedule
    normalize: str = "pixel_mean"      # Section 4.2; "channel" for mean/std per channel
    test_subset: int = 0               # >0: curve points on a stratified subset of the test set; final on all
    final_on_subset: bool = False      # True: the final test error is the subset's too (no extra pass over 10k)

    def __post_init__(self):
        CifarNetSpec(self.depth, self.residual, self.shortcut)  # validates depth and option early
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown normalisation {self.normalize!r}; use 'pixel_mean' or 'channel'")
        limit = 45_000 if self.val_split else 50_000
        if not (0 <= self.subset <= limit):
            raise ValueError(f"subset {self.subset} is outside 0..{limit} (the training images available); "
                             f"use 0 for all of them")
        if not (0 <= self.test_subset <= (5_000 if self.val_split else 10_000)):
            raise ValueError(f"test_subset {self.test_subset} is outside 0..10000 (5000 with val_split); "
                             "use 0 to evaluate on every test image")

    @property
    def name(self) -> str:
        return CifarNetSpec(self.depth, self.residual, self.shortcut).name

    @property
    def slug(self) -> str:
        t = self.train
        return (f"{'resnet' if self.residual else 'plain'}{self.depth}{self.shortcut if self.residual else ''}"
                f"_it{t.iters}_lr{t.lr:g}_b{t.batch_size}_n{self.subset or 'all'}{'_val' if self.val_split else ''}"
                f"_{self.normalize}_s{t.seed}" + (f"_t{self.test_subset}" if self.test_subset else "")
                + ("f" if self.test_subset and self.final_on_subset else ""))


def paper_recipe(depth: int) -> TrainConfig:
    """Section 4.2's recipe for ``depth``: the warm-up is on for 110 layers and deeper."""
    return TrainConfig(warmup=depth >= 110)


def run_cifar(run: CifarRun, root: str | os.PathLike | None = None, device="auto", progress: bool = True,
              data=None, force: bool = False, stop_after: int | None = None) -> dict:
    """Train one CIFAR net; stored under ``root/<run.slug>/``. An existing finished run is returned
    as it is (no retraining) unless ``force``; an unfinished one resumes."""
    run_dir = Path(root) if root else output_dir() / "runs"
    run_dir = run_dir / run.slug
    if force and run_dir.exists():
        for f in (CHECKPOINT, RESULT):
            (run_dir / f).unlink(missing_ok=True)
    if (run_dir / RESULT).exists():
        return json.loads((run_dir / RESULT).read_text())
    dev = pick_device(device)
    bf16, cl = resolve_formats(dev, run.train)
    data = data or load_cifar10()
    train_src, test_src = make_loaders(data, batch_size=run.train.batch_size, subset=run.subset,
                                       val_split=run.val_split, normalize=run.normalize, seed=run.train.seed,
                                       device=dev, channels_last=cl)
    curve_src = test_src
    if run.test_subset and run.test_subset < test_src.num_examples:
        keep = stratified_indices(test_src.y.cpu(), run.test_subset, seed=0).to(test_src.device)
        curve_src = TensorLoader(test_src.x[keep], test_src.y[keep], test_src.batch_size, mean=test_src.mean,
                                 std=test_src.std, device=dev, channels_last=cl)
    torch.manual_seed(run.train.seed)
    model = cifar_resnet(run.depth, run.shortcut, run.residual)
    spec = {"kind": "cifar", "depth": run.depth, "residual": run.residual, "shortcut": run.shortcut,
            "num_classes": 10}
    res = fit(model, train_src, curve_src, run.train, run_dir=run_dir, device=dev, progress=progress, spec=spec,
              stop_after=stop_after, desc=run.name,
              final_source=test_src if curve_src is not test_src and not run.final_on_subset else None)
    if "final" in res:
        res.update(name=run.name, run={k: v for k, v in dataclasses.asdict(run).items() if k != "train"},
                   train_examples=train_src.num_examples,
                   eval_set=("val" if run.val_split else "test") + (f"{curve_src.num_examples}" if run.final_on_subset
                                                                    else ("5k" if run.val_split else "10k")))
        atomic_write_json(run_dir / RESULT, res)
    return res


def list_runs(root: str | os.PathLike) -> list[dict]:
    """Every finished run under ``root`` (each result gets its folder as ``run_dir``)."""
    out = []
    for p in sorted(Path(root).glob(f"*/{RESULT}")):
        r = json.loads(p.read_text())
        r["run_dir"] = str(p.parent)
        out.append(r)
    return out



def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m resnet_lib train",
                                 description="Train a CIFAR-10 net of Section 4.2 (defaults: the paper's full recipe).")
    ap.add_argument("--depth", type=int, default=20, help="6n+2: 20, 32, 44, 56, 110, 1202")
    ap.add_argument("--plain", action="store_true", help="no shortcuts (the paper's plain net)")
    ap.add_argument("--shortcut", default="A", choices=["A", "B", "C"])
    ap.add_argument("--iters", type=int, default=None, help="iterations (default 64000); lr drops at 50%% and 75%%")
    ap.add_argument("--scale", type=float, default=None, help="scale the 64k schedule by this factor")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--subset", type=int, default=0, help="stratified training subset (0: all)")
    ap.add_argument("--val-split", action="store_true", help="45k/5k train/val split (Section 4.2)")
    ap.add_argument("--normalize", default="pixel_mean", choices=["pixel_mean", "channel"])
    ap.add_argument("--eval-every", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="runs folder (default: outputs/runs)")
    ap.add_argument("--force", action="store_true", help="retrain even if the run is stored")
    a = ap.parse_args(argv)
    cfg = dataclasses.replace(paper_recipe(a.depth), lr=a.lr, batch_size=a.batch_size, seed=a.seed, amp=a.amp)
    if a.iters is not None and a.scale is not None:
        ap.error("give --iters or --scale, not both")
    if a.iters is not None:
        cfg = cfg.with_iters(a.iters)
    elif a.scale is not None:
        cfg = cfg.scaled(a.scale)
    if a.eval_every:
        cfg = dataclasses.replace(cfg, eval_every=a.eval_every)
    run = CifarRun(a.depth, not a.plain, a.shortcut, cfg, a.subset, a.val_split, a.normalize)
    res = run_cifar(run, a.out, a.device, force=a.force)
    print(json.dumps({"name": res["name"], **res["final"], "wall_s": res["wall_s"], "img_per_s": res["img_per_s"]}))
    return 0
