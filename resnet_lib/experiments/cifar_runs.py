"""Section 4.2's single CIFAR-10 runs: a run's description, its folder, training it (or reusing it),
listing finished runs, and the ``train`` command line."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..base.device import pick_device
from ..base.io import WriteFailed, ensure_writable_dir
from ..base.paths import output_dir
from ..base.precision import SETTINGS
from ..data.cifar import NORMALIZATIONS, TensorLoader, load_cifar10, make_loaders, stratified_indices
from ..engine.checkpoint import CHECKPOINT, PREVIOUS, RESULT, identity_hash, move_aside, read_result, run_identity
from ..engine.config import TrainConfig
from ..engine.loop import Trainer, run_trainer
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
    def spec(self) -> dict:
        """The architecture, as ``models.registry.build_model`` rebuilds it."""
        return CifarNetSpec(self.depth, self.residual, self.shortcut).to_dict()

    @property
    def identity(self) -> dict:
        """Everything that changes this run's numbers: the net, the recipe, the data options."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("depth", "residual", "shortcut", "train")}
        # "auto" precision is the policy it means on this machine's default device (``run_cifar`` names it for
        # the device it trains on): the policy is part of the identity
        return run_identity(self.spec, self.train.resolved(pick_device("auto")), data)

    def resolved(self, device: torch.device) -> "CifarRun":
        """This run with its "auto" precision replaced by the policy it means on ``device``."""
        return dataclasses.replace(self, train=self.train.resolved(device))

    @property
    def slug(self) -> str:
        """The run's folder name: readable settings, then the hash of its whole identity (two runs that
        differ in any setting, shown here or not, get different folders)."""
        t = self.train
        return (f"{'resnet' if self.residual else 'plain'}{self.depth}{self.shortcut if self.residual else ''}"
                f"_it{t.iters}_lr{t.lr:g}_b{t.batch_size}_n{self.subset or 'all'}{'_val' if self.val_split else ''}"
                f"_s{t.seed}-{identity_hash(self.identity)}")

    def command(self, root=None) -> str:
        """The command that trains this run again: ``python -m resnet_lib train ...`` where its options
        express the run, else the ``run_cifar`` call."""
        t, argv = self.train, ["--depth", str(self.depth)]
        argv += ["--shortcut", self.shortcut] if self.residual else ["--plain"]
        argv += ["--iters", str(t.iters), "--lr", f"{t.lr:g}", "--batch-size", str(t.batch_size),
                 "--eval-every", str(t.eval_every), "--seed", str(t.seed), "--precision", t.precision,
                 "--normalize", self.normalize]
        argv += (["--subset", str(self.subset)] if self.subset else []) + (["--val-split"] if self.val_split else [])
        if root is not None:
            argv += ["--out", str(root)]
        try:
            same = _run_from_args(_parser().parse_args(argv)).identity == self.identity
        except (SystemExit, ValueError):
            same = False
        return "python -m resnet_lib train " + " ".join(shlex.quote(x) for x in argv) if same else \
            f"run_cifar({self!r}) (e.g. run the notebook that made it again)"


def paper_recipe(depth: int) -> TrainConfig:
    """Section 4.2's recipe for ``depth``: the warm-up is on for 110 layers and deeper."""
    return TrainConfig(warmup=depth >= 110)


def run_cifar(run: CifarRun, root: str | os.PathLike | None = None, device="auto", progress: bool = True,
              data=None, force: bool = False, stop_after: int | None = None) -> dict:
    """Train one CIFAR net; stored under ``root/<run.slug>/``. A finished run of the same identity is
    returned as it is (no retraining) unless ``force``; an unfinished one resumes. The folder is checked
    writable before any data is loaded."""
    trainer = cifar_trainer(run, root, device, progress, data, force)
    return trainer if isinstance(trainer, dict) else run_trainer(trainer, stop_after)


def cifar_trainer(run: CifarRun, root: str | os.PathLike | None = None, device="auto", progress: bool = True,
                  data=None, force: bool = False) -> Trainer | dict:
    """``run_cifar`` up to training: the stored result of ``run``, else its ``Trainer``, resumed from the
    run's checkpoint where there is one."""
    root = Path(root) if root else output_dir() / "runs"
    dev = pick_device(device)
    run = run.resolved(dev)  # "auto" precision named: the policy is part of the run's identity and slug
    run_dir = ensure_writable_dir(root / run.slug, fix="choose another folder (the CLI's --out, the notebook's "
                                                          "OUT_DIR)")
    rebuild = run.command(root)
    if force:  # the stored run is kept, renamed, as a damaged file is (engine.checkpoint.move_aside): never deleted
        for f in (CHECKPOINT, PREVIOUS, RESULT):
            if (run_dir / f).exists():
                move_aside(run_dir / f, "is replaced, as --force (force=True) asked", tag="replaced")
    if (stored := read_result(run_dir / RESULT, run.identity, rebuild, RUN_KEYS)) is not None:
        return stored
    src = run_sources(run, data or load_cifar10(), dev)
    torch.manual_seed(run.train.seed)
    model = cifar_resnet(run.depth, run.shortcut, run.residual)
    trainer = Trainer(model, src.train, src.curve, run.train, run_dir=run_dir, device=dev, progress=progress,
                      spec=run.spec, identity=run.identity, extra=src.extra, rebuild=rebuild, desc=run.name,
                      final_source=src.final)
    stored = trainer.resume()
    return trainer if stored is None else stored


@dataclass
class RunSources:
    """A run's batch sources, and what its result records about them."""
    train: TensorLoader
    curve: TensorLoader          # the curve's points (all test images, or a stratified subset)
    final: TensorLoader | None   # the final numbers' (None: the curve's last point)
    extra: dict                  # run_cifar's additions to the result (RUN_KEYS)


def run_sources(run: CifarRun, data, dev: torch.device) -> RunSources:
    """The training source (order and augmentation from the run's seed) and evaluation sources of ``run``."""
    _, cl = resolve_formats(dev, run.train)
    train_src, test_src = make_loaders(data, batch_size=run.train.batch_size, subset=run.subset,
                                       val_split=run.val_split, normalize=run.normalize, seed=run.train.seed,
                                       device=dev, channels_last=cl)
    curve_src = test_src
    if run.test_subset and run.test_subset < test_src.num_examples:
        keep = stratified_indices(test_src.y.cpu(), run.test_subset, seed=0).to(test_src.device)
        curve_src = TensorLoader(test_src.x[keep], test_src.y[keep], test_src.batch_size, mean=test_src.mean,
                                 std=test_src.std, device=dev, channels_last=cl)
    n_test = test_src.num_examples
    if run.final_on_subset:  # the final error is the curve subset's too
        n_test = curve_src.num_examples
    eval_set = ("val" if run.val_split else "test") + (f"{n_test // 1000}k" if n_test % 1000 == 0 else f"{n_test}")
    extra = {"name": run.name, "run": {k: v for k, v in dataclasses.asdict(run).items() if k != "train"},
             "train_examples": train_src.num_examples, "eval_set": eval_set}
    final = test_src if curve_src is not test_src and not run.final_on_subset else None
    return RunSources(train_src, curve_src, final, extra)


def list_runs(root: str | os.PathLike) -> list[dict]:
    """Every finished run under ``root`` (each result gets its folder as ``run_dir``); a damaged or
    incomplete result is moved aside with a warning and left out."""
    out = []
    for p in sorted(Path(root).glob(f"*/{RESULT}")):
        r = read_result(p, rebuild="the command or notebook that made it")
        if r is not None:
            out.append({**r, "run_dir": str(p.parent)})
    return out


RUN_KEYS = ("name", "run", "train_examples", "eval_set")  # what run_cifar adds to fit's result


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m resnet_lib train",
                                 description="Train a CIFAR-10 net of Section 4.2 (defaults: the paper's recipe; "
                                             "precision: see --precision).")
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
    ap.add_argument("--eval-every", type=int, default=None,
                    help="iterations between test-set evaluations (default: 32 over the run, at least 200 apart)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", "--amp", default="auto", choices=SETTINGS,
                    help="precision policy (resnet_lib/base/precision.py): 'fp32' as the paper trained; 'tf32' (GPU); "
                         "'bf16' autocast; 'bf16-conv' (bf16 convolutions, fp32 identity path); 'auto' the fastest "
                         "policy found faithful on this device ('off' is the older name of fp32)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="runs folder (default: outputs/runs)")
    ap.add_argument("--force", action="store_true", help="retrain even if the run is stored (its files are kept, "
                    "renamed <name>.replaced-<time>)")
    return ap


def _run_from_args(a: argparse.Namespace) -> CifarRun:
    cfg = dataclasses.replace(paper_recipe(a.depth), lr=a.lr, batch_size=a.batch_size, seed=a.seed, precision=a.precision)
    if a.iters is not None and a.scale is not None:
        raise ValueError("give --iters or --scale, not both")
    if a.iters is not None:
        cfg = cfg.with_iters(a.iters)
    elif a.scale is not None:
        cfg = cfg.scaled(a.scale)
    if a.eval_every:
        cfg = dataclasses.replace(cfg, eval_every=a.eval_every)
    return CifarRun(a.depth, not a.plain, a.shortcut, cfg, a.subset, a.val_split, a.normalize)


def _warn_plainly(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def cli(argv: list[str]) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    run = _run_from_args(a)  # bad values raise UserError/ValueError: one line from resnet_lib.__main__
    with warnings.catch_warnings():
        warnings.showwarning = _warn_plainly
        try:
            res = run_cifar(run, a.out, a.device, force=a.force)
        except WriteFailed as e:  # disk full: say so plainly (UserErrors are reported by resnet_lib.__main__)
            print(f"error: {e.strerror}", file=sys.stderr)
            return 1
    if "final" not in res:
        return 0
    print(json.dumps({"name": res["name"], **res["final"], "wall_s": res["wall_s"], "img_per_s": res["img_per_s"]}))
    return 0
