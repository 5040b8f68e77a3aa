"""The ImageNet training recipe of Section 3.4, and ``python -m resnet_lib train-imagenet``.

Section 3.4: "We use SGD with a mini-batch size of 256. The learning rate starts from 0.1 and is divided
by 10 when the error plateaus, and the models are trained for up to 60 x 10^4 iterations. We use a weight
decay of 0.0001 and a momentum of 0.9. We do not use dropout." The plateau is detected by
:class:`PlateauSchedule` (the paper does not say how; we use the rule of PyTorch's ``ReduceLROnPlateau``).

Which images steer the schedule: by default the plateau rule watches a held-out part of the *training* images
(``holdout``, a stratified share of each class, never trained on), and the reported errors (centre crop, 10-crop,
multi-scale) come from the validation images, which therefore never steer training. The paper's Fig. 4 curves
and its plateau rule used the validation set; ``PlateauConfig(monitor="val")`` does that, and the result says so.

A run folder is tied to its identity (:func:`run_identity`: the network, every training, plateau and
augmentation setting, the data options and the number of processes), stored as ``identity.json``. A rerun
into the same ``--out`` reuses or resumes the stored run only on an exact match; otherwise the old folder is
moved aside to ``<out>.<its identity's hash>`` and the run trains again.

The command trains on Tiny ImageNet (standard layout, held in memory) or on any pair of ImageFolder
folders ``<data>/train`` and ``<data>/val`` (full ImageNet, read by DataLoader workers), in one process
or under torchrun with DistributedDataParallel (see ``resnet_lib.engine.loop.fit``)::

    python -m resnet_lib train-imagenet --data ../shared/data/tiny-imagenet-200 --classes 10 --iters 200
    torchrun --standalone --nproc_per_node=8 -m resnet_lib.experiments.imagenet_train --data /data/imagenet --depth 50
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from ..base.device import pick_device, use_bf16
from ..base.errors import report_errors
from ..base.io import atomic_write_json
from ..base.paths import output_dir, tiny_imagenet_dir
from ..base.precision import SETTINGS
from ..data.imagenet import IMAGENET_EIGVAL, IMAGENET_EIGVEC, TINY_AUG, AugConfig, pixel_mean
from ..data.imagenet_sources import FolderDataset, FolderSource, LazyImages, TensorSource, pixel_mean_of_files
from ..data.images import image_folders
from ..data.tiny_imagenet import load_tiny_imagenet
from ..engine.checkpoint import CHECKPOINT, RESULT, identity_hash
from ..engine.config import TrainConfig
from ..engine.distributed import DistEnv
from ..engine.loop import fit
from ..models.imagenet import ImageNetSpec, from_spec
from .imagenet_eval import evaluate_modes

IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 training set; 5005 iterations per epoch at batch 256


MONITORS = ("holdout", "val", "train")


@dataclass(frozen=True)
class PlateauConfig:
    """When the error "plateaus" (Section 3.4), divide the lr by 10. The paper gives no rule; this is
    ``torch.optim.lr_scheduler.ReduceLROnPlateau(mode="min", threshold_mode="rel")``'s."""
    factor: float = 0.1       # "divided by 10" (Section 3.4)
    patience: int = 3         # evaluations without improvement that are tolerated; one more drops the lr
    threshold: float = 0.01   # relative improvement of the best error that counts as an improvement
    cooldown: int = 0         # evaluations after a drop before bad ones are counted again
    min_lr: float = 1e-4      # no drop below: 0.1 -> 0.01 -> 0.001 -> 0.0001
    # "holdout": error on held-out training images (default; the reported validation images never steer
    # training); "val": the validation error, as the paper did (Fig. 4); "train": the training error
    monitor: str = "holdout"

    def __post_init__(self):
        if not 0 < self.factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {self.factor}")
        if self.patience < 0 or self.cooldown < 0:
            raise ValueError("patience and cooldown are numbers of evaluations, >= 0")
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {MONITORS}, got {self.monitor!r}")


def imagenet_train_config(**overrides) -> TrainConfig:
    """Section 3.4's optimisation settings as a :class:`~resnet_lib.engine.config.TrainConfig`: no milestones, the
    drops come from :class:`PlateauSchedule`; one evaluation per ImageNet epoch (5005 iterations)."""
    base = TrainConfig(batch_size=256, lr=0.1, momentum=0.9, weight_decay=1e-4, iters=600_000, milestones=(),
                       eval_every=IMAGENET_TRAIN_IMAGES // 256, checkpoint_every=IMAGENET_TRAIN_IMAGES // 256)
    return dataclasses.replace(base, **overrides)


@dataclass(frozen=True)
class ImageNetRecipe:
    """All of Section 3.4: optimisation, plateau rule and data augmentation (paper defaults)."""
    train: TrainConfig = field(default_factory=imagenet_train_config)
    plateau: PlateauConfig = field(default_factory=PlateauConfig)
    aug: AugConfig = field(default_factory=AugConfig)


class PlateauSchedule:
    """Schedule object for ``resnet_lib.engine.loop.fit``: ``lr_at(iteration)``, ``observe(iteration, train_err,
    test_err)``. The lr is divided by ``factor`` after more than ``patience`` evaluations in a row fail to
    improve the best error by ``threshold`` (relative). Drops are stored as iterations, so ``lr_at`` is a
    pure function of the state and resumes exactly from a checkpoint."""

    def __init__(self, lr: float, cfg: PlateauConfig = PlateauConfig()):
        self.lr, self.cfg = lr, cfg
        self.best, self.bad, self.cool = math.inf, 0, 0
        self.drops: list[int] = []  # iterations from which each division applies

    def lr_at(self, iteration: int) -> float:
        n = sum(d <= iteration for d in self.drops)
        return max(self.lr * self.cfg.factor ** n, self.cfg.min_lr)

    def observe(self, iteration: int, train_err: float | None = None, test_err: float | None = None) -> None:
        err = train_err if self.cfg.monitor == "train" else test_err  # test_err: fit's evaluation set
        if err is None:  # e.g. fit's warm-up calls carry only the training error
            return
        if err < self.best * (1 - self.cfg.threshold):
            self.best, self.bad = err, 0
        else:
            self.bad += 1
        if self.cool > 0:
            self.cool -= 1
            self.bad = 0
        if self.bad > self.cfg.patience:
            if self.lr_at(iteration) * self.cfg.factor >= self.cfg.min_lr * (1 - 1e-9):
                self.drops.append(iteration)
            self.cool, self.bad = self.cfg.cooldown, 0

    def state_dict(self) -> dict:
        return {"best": self.best, "bad": self.bad, "cool": self.cool, "drops": list(self.drops)}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad, self.cool, self.drops = state["best"], state["bad"], state["cool"], list(state["drops"])


# ---------------------------------------------------------------------------------------------------
# Data for a run
# ---------------------------------------------------------------------------------------------------

@dataclass
class RunData:
    """What a run trains on (``train``), steers its schedule with (``holdout``: training images held out of
    training) and reports (``val``). ``files`` names each set's images, so their separation can be checked."""
    train: TensorSource | FolderSource
    val: TensorSource | FolderSource
    classes: list[str]
    names: list[str]
    mean: torch.Tensor
    aug: AugConfig
    val_images: object = None        # uint8 tensor (Tiny ImageNet) or a sequence of images, for the test modes
    val_labels: torch.Tensor | None = None
    skipped: int = 0
    holdout: TensorSource | FolderSource | None = None
    files: dict = field(default_factory=dict)  # {"train": [...], "holdout": [...], "val": [...]}

    def counts(self) -> dict:
        return {k: len(v) for k, v in self.files.items()}


def holdout_split(labels: torch.Tensor, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, held_out)`` positions: ``fraction`` of each class's images (rounded, at least one when
    ``fraction > 0``, never a class's last one) held out, drawn with a generator seeded by ``seed``.
    The split does not depend on the run's seed, so runs with different seeds share it."""
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout must be a fraction in [0, 1), got {fraction}; 0 holds nothing out "
                         "(then the plateau rule needs monitor='val' or 'train')")
    g = torch.Generator().manual_seed(seed)
    held = [torch.zeros(0, dtype=torch.long)]
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        k = min(max(1, round(fraction * len(idx))), len(idx) - 1) if fraction > 0 else 0
        held.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    held_out = torch.cat(held).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[held_out] = False
    return keep.nonzero().flatten(), held_out


def tiny_imagenet_data(root=None, *, classes: int | None = None, train_per_class: int | None = None,
                       val_per_class: int | None = None, batch_size: int = 256, aug: AugConfig = TINY_AUG,
                       seed: int = 0, device="cpu", channels_last: bool = True, on_bad_image: str = "raise",
                       progress: bool = True, holdout: float = 0.1) -> RunData:
    """Tiny ImageNet in memory with Section 3.4's pipeline at ``aug``'s sizes (default: all sizes / 4);
    ``holdout`` of each class's training images (of ``train_per_class``) are kept out of training for
    the plateau rule. The per-pixel mean is that of the images trained on. ``channels_last``: the batches'
    memory format (fit puts the model in channels_last with bf16; fp32 runs gain nothing from it)."""
    loaded = load_tiny_imagenet(root, "train", classes, train_per_class, on_bad_image, progress)
    val = load_tiny_imagenet(root, "val", loaded.classes, val_per_class, on_bad_image, progress)
    keep, held = holdout_split(loaded.labels, holdout)
    train, monitor = loaded.subset(keep), loaded.subset(held)
    mean = pixel_mean(train.images, aug.crop)
    cl, eval_batch = channels_last, max(batch_size, 100)
    return RunData(TensorSource(train, batch_size, aug, mean, train=True, seed=seed, device=device, channels_last=cl),
                   TensorSource(val, eval_batch, aug, mean, train=False, device=device, channels_last=cl),
                   train.classes, train.names, mean, aug, val.images, val.labels,
                   len(loaded.skipped) + len(val.skipped),
                   TensorSource(monitor, eval_batch, aug, mean, train=False, device=device, channels_last=cl)
                   if len(monitor) else None,
                   {"train": train.paths, "holdout": monitor.paths, "val": val.paths})


def folder_data(root, *, batch_size: int = 256, aug: AugConfig = AugConfig(), seed: int = 0, workers: int = 8,
                on_bad_image: str = "raise", mean: torch.Tensor | None = None, progress: bool = True,
                holdout: float = 0.02) -> RunData:
    """``<root>/train`` and ``<root>/val`` in ImageFolder layout (full ImageNet: 1000 class folders each),
    read lazily with Section 3.4's pipeline at ``aug``'s sizes. ``holdout`` of each class's training images
    (ImageNet: about 26 per class, 25.6k in all) steer the plateau rule and are not trained on."""
    root = Path(root)
    all_s, val_s, classes = image_folders(root / "train", root / "val")
    keep, held = holdout_split(torch.tensor([y for _, y in all_s]), holdout)
    train_s, held_s = [all_s[i] for i in keep.tolist()], [all_s[i] for i in held.tolist()]
    if mean is None:
        mean = pixel_mean_of_files([p for p, _ in train_s], aug.crop, progress=progress)
    kw = dict(eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC, on_bad_image=on_bad_image)
    train = FolderSource(FolderDataset(train_s, aug, mean, train=True, seed=seed, **kw), batch_size, workers=workers)
    val = FolderSource(FolderDataset(val_s, aug, mean, train=False, seed=seed, **kw), batch_size, workers=workers)
    monitor = FolderSource(FolderDataset(held_s, aug, mean, train=False, seed=seed, **kw), batch_size,
                           workers=workers) if held_s else None
    files = {k: [str(p) for p, _ in s] for k, s in (("train", train_s), ("holdout", held_s), ("val", val_s))}
    return RunData(train, val, classes, classes, mean, aug, LazyImages([p for p, _ in val_s]),
                   torch.tensor([y for _, y in val_s]), holdout=monitor, files=files)


# ---------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------

def image_roles(data: RunData, plateau: PlateauConfig) -> dict:
    """Which images were trained on, which steered the lr schedule, and which are reported."""
    n = data.counts()
    steer = {"holdout": f"{n.get('holdout', 0)} held-out training images (not trained on)",
             "val": f"the {n.get('val', 0)} validation images (the reported ones, as in the paper)",
             "train": "the training error"}[plateau.monitor]
    return {"trained_on": n.get("train", 0), "schedule_monitor": plateau.monitor, "schedule_images": steer,
            "curve_set": "holdout" if data.holdout is not None and plateau.monitor != "val" else "val",
            "reported": f"the {n.get('val', 0)} validation images", "counts": n}


def train_imagenet(data: RunData, spec: ImageNetSpec, recipe: ImageNetRecipe = ImageNetRecipe(), *, run_dir=None,
                   device="auto", progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """Build the network of ``spec`` (seeded by ``recipe.train.seed``) and train it with ``fit`` and a
    :class:`PlateauSchedule`; returns ``(model, result)``. Runs under torchrun unchanged.

    The training curve's evaluations (``history["test_err"]``), which the plateau rule watches, are on
    ``data.holdout`` (``monitor="val"``: on the validation images); ``result["final"]["test_err"]`` is
    the validation error at the end. ``result["images"]`` says which images played which role."""
    if recipe.plateau.monitor == "holdout" and data.holdout is None:
        raise ValueError("the plateau rule watches held-out training images, but none were held out "
                         "(holdout=0); hold some out (holdout=0.1) or pass PlateauConfig(monitor='val')")
    curve = data.holdout if data.holdout is not None and recipe.plateau.monitor != "val" else data.val
    torch.manual_seed(recipe.train.seed)
    model = from_spec(spec)
    schedule = PlateauSchedule(recipe.train.lr, recipe.plateau)
    result = fit(model, data.train, curve, recipe.train, run_dir=run_dir, schedule=schedule, device=device,
                 progress=progress, spec=spec.to_dict(), desc=f"ResNet-{spec.depth}", final_source=data.val)
    result["lr_drops"] = list(schedule.drops)
    result["images"] = image_roles(data, recipe.plateau)
    return model, result


# ---------------------------------------------------------------------------------------------------
# Run identity: reuse a stored run only when everything that shapes its result is the same
# ---------------------------------------------------------------------------------------------------

IDENTITY = "identity.json"


def run_identity(spec: dict, recipe: ImageNetRecipe, data: dict, world_size: int = 1) -> dict:
    """Everything that changes a run's result: the network, every training / plateau / augmentation
    setting, the data options (``data``: folder, class and image limits, the images' counts and class
    ids) and the number of processes (batch norm normalises each process's share). Not in it: the
    device and DataLoader workers, which change how fast, not what."""
    ident = {"spec": spec, "train": dataclasses.asdict(recipe.train), "plateau": dataclasses.asdict(recipe.plateau),
             "aug": dataclasses.asdict(recipe.aug), "data": data, "world_size": world_size}
    return json.loads(json.dumps(ident, sort_keys=True))  # tuples -> lists, as stored


def claim_run_dir(run_dir, identity: dict, main: bool = True) -> Path | None:
    """Make ``run_dir`` this identity's folder. A stored run with another identity (or none recorded) is
    moved aside to ``<run_dir>.<its hash>`` (kept, not overwritten); returns where it went, else None.
    Only the main process touches the disk; under torchrun the others wait at a barrier after it."""
    run_dir = Path(run_dir)
    path = run_dir / IDENTITY
    stored = json.loads(path.read_text()) if path.is_file() else None
    if stored == identity or not main:
        return None
    moved = None
    if stored is not None or any((run_dir / f).exists() for f in (CHECKPOINT, RESULT, "tests.json")):
        tag = identity_hash(stored) if stored is not None else "unrecorded"
        moved = run_dir.with_name(f"{run_dir.name}.{tag}")
        k = 1
        while moved.exists():
            k += 1
            moved = run_dir.with_name(f"{run_dir.name}.{tag}-{k}")
        run_dir.rename(moved)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, identity)
    return moved


def _device_for_rank(device: str, local_rank: int, world: int) -> str:
    """Under torchrun each process drives its own GPU, ``cuda:LOCAL_RANK``."""
    if world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return device


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m resnet_lib train-imagenet",
                                 description="Train a Table 1 network with Section 3.4's recipe on Tiny ImageNet "
                                             "or an ImageFolder data set, in one process or under torchrun.")
    ap.add_argument("--data", default=None, help="Tiny ImageNet folder (has wnids.txt) or a folder with train/ and "
                                                 "val/ in ImageFolder layout (default: Tiny ImageNet's usual place)")
    ap.add_argument("--depth", type=int, default=18, help="18, 34, 50, 101 or 152 (Table 1)")
    ap.add_argument("--plain", action="store_true", help="no shortcuts (the plain nets of Section 4.1)")
    ap.add_argument("--shortcut", default="B", choices=["A", "B", "C"], help="Section 3.3 / Table 3")
    ap.add_argument("--small-input", action="store_true", help="3x3 stride-1 stem, no max-pool (for 64x64 images)")
    ap.add_argument("--classes", type=int, default=None, help="Tiny ImageNet: first N classes (default: all)")
    ap.add_argument("--train-per-class", type=int, default=None, help="Tiny ImageNet: at most N per class")
    ap.add_argument("--val-per-class", type=int, default=None, help="Tiny ImageNet: at most N per class")
    ap.add_argument("--holdout", type=float, default=None,
                    help="fraction of each class's training images held out of training to steer the plateau "
                         "rule (default: 0.1 for Tiny ImageNet, 0.02 for ImageFolder data); the reported "
                         "validation errors then come from images that never steered training")
    ap.add_argument("--plateau-on", default="holdout", choices=list(MONITORS),
                    help="what the plateau rule watches: held-out training images (default), the validation "
                         "images (the paper's practice; they then steer training) or the training error")
    ap.add_argument("--aug-scale", type=float, default=None,
                    help="multiply Section 3.4's sizes (default: 0.25 for Tiny ImageNet's 64x64 images, else 1)")
    ap.add_argument("--iters", type=int, default=600_000, help="iterations (Section 3.4: up to 600000)")
    ap.add_argument("--batch-size", type=int, default=256, help="GLOBAL batch, all processes together")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=None, help="iterations between evaluations (default: 1 epoch)")
    ap.add_argument("--patience", type=int, default=PlateauConfig.patience, help="evaluations tolerated on a plateau")
    ap.add_argument("--workers", type=int, default=8, help="DataLoader workers per process (ImageFolder data)")
    ap.add_argument("--skip-bad-images", action="store_true", help="leave undecodable images out (and count them)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", "--amp", default="auto", choices=SETTINGS)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="run folder (default: outputs/runs/imagenet_<depth>); a stored run "
                                                "there is reused only if every setting matches, else moved aside")
    ap.add_argument("--no-test", action="store_true", help="skip the centre / 10-crop / multi-scale tests at the end")
    return ap


def cli(argv: list[str] | None = None) -> int:
    """``python -m resnet_lib train-imagenet``; also ``torchrun ... -m resnet_lib.experiments.imagenet_train``."""
    a = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    env = DistEnv.from_env()
    device = _device_for_rank(a.device, env.local_rank, env.world)
    root = tiny_imagenet_dir(a.data)
    if not root.is_dir():
        raise FileNotFoundError(f"--data {root} does not exist; pass Tiny ImageNet's folder or a folder with "
                                "train/ and val/ in ImageFolder layout")
    tiny = (root / "wnids.txt").is_file()
    aug = AugConfig().scaled(a.aug_scale if a.aug_scale else (0.25 if tiny else 1.0))
    bad = "skip" if a.skip_bad_images else "raise"
    holdout = a.holdout if a.holdout is not None else (0.1 if tiny else 0.02)
    if tiny:
        data = tiny_imagenet_data(root, classes=a.classes, train_per_class=a.train_per_class,
                                  val_per_class=a.val_per_class, batch_size=a.batch_size, aug=aug, seed=a.seed,
                                  channels_last=use_bf16(pick_device(device), a.precision), on_bad_image=bad,
                                  progress=env.main, holdout=holdout)
    else:
        data = folder_data(root, batch_size=a.batch_size, aug=aug, seed=a.seed, workers=a.workers,
                           on_bad_image=bad, progress=env.main, holdout=holdout)
    epoch = max(1, data.counts()["train"] // a.batch_size)
    cfg = imagenet_train_config(iters=a.iters, batch_size=a.batch_size, lr=a.lr, seed=a.seed, precision=a.precision,
                                eval_every=min(a.eval_every or epoch, a.iters),
                                checkpoint_every=min(a.eval_every or epoch, a.iters))
    recipe = ImageNetRecipe(cfg, PlateauConfig(patience=a.patience, monitor=a.plateau_on), aug)
    spec = ImageNetSpec(a.depth, not a.plain, a.shortcut, len(data.classes), small_input=a.small_input)
    run_dir = Path(a.out) if a.out else output_dir() / "runs" / f"imagenet_{'plain' if a.plain else 'resnet'}{a.depth}"
    data_options = {"root": str(root.resolve()), "layout": "tiny" if tiny else "imagefolder", "classes": a.classes,
                    "train_per_class": a.train_per_class, "val_per_class": a.val_per_class, "holdout": holdout,
                    "skip_bad_images": a.skip_bad_images, "images": data.counts(),
                    "class_ids": hashlib.sha256("\n".join(data.classes).encode()).hexdigest()[:16]}
    moved = claim_run_dir(run_dir, run_identity(spec.to_dict(), recipe, data_options, env.world), env.main)
    if env.world > 1:
        dist.barrier()  # the other ranks resume only from the folder rank 0 has claimed
    if moved and env.main:
        print(f"{run_dir} held a run with other settings; it was moved to {moved}", file=sys.stderr)
    model, result = train_imagenet(data, spec, recipe, run_dir=run_dir, device=device, progress=env.main)
    summary = {"run_dir": str(run_dir), **result.get("final", {}), "lr_drops": result["lr_drops"],
               "images": result["images"], "world_size": env.world,
               "skipped_images": data.skipped + getattr(data.train, "skipped", 0)}
    if env.main and not a.no_test:
        tests = evaluate_modes(model, data.val_images, data.val_labels, aug, data.mean, device=device,
                               precision=a.precision, progress=True)
        atomic_write_json(run_dir / "tests.json", tests)
        summary["tests"] = tests
    if env.main:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":  # torchrun's entry: bad input is one line per rank, as on python -m resnet_lib
    raise SystemExit(report_errors(cli, sys.argv[1:], interrupted="interrupted (the same command resumes the run)"))
