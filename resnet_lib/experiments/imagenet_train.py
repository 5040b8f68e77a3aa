"""The ImageNet training recipe of Section 3.4, and ``python -m resnet_lib train-imagenet``.

Section 3.4: "We use SGD with a mini-batch size of 256. The learning rate starts from 0.1 and is divided
by 10 when the error plateaus, and the models are trained for up to 60 x 10^4 iterations. We use a weight
decay of 0.0001 and a momentum of 0.9. We do not use dropout." The plateau is detected by
:class:`PlateauSchedule` (the paper does not say how; we use the rule of PyTorch's ``ReduceLROnPlateau``).

The command trains on Tiny ImageNet (standard layout, held in memory) or on any pair of ImageFolder
folders ``<data>/train`` and ``<data>/val`` (full ImageNet, read by DataLoader workers), in one process
or under torchrun with DistributedDataParallel (see ``resnet_lib.engine.loop.fit``)::

    python -m resnet_lib train-imagenet --data ../shared/data/tiny-imagenet-200 --classes 10 --iters 200
    torchrun --standalone --nproc_per_node=8 -m resnet_lib.experiments.imagenet_train --data /data/imagenet --depth 50
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..base.device import pick_device, use_bf16
from ..base.io import atomic_write_json
from ..base.paths import output_dir, tiny_imagenet_dir
from ..data.imagenet import IMAGENET_EIGVAL, IMAGENET_EIGVEC, TINY_AUG, AugConfig, pixel_mean
from ..data.imagenet_sources import FolderDataset, FolderSource, LazyImages, TensorSource, pixel_mean_of_files
from ..data.images import image_folders
from ..data.tiny_imagenet import load_tiny_imagenet
from ..engine.config import TrainConfig
from ..engine.distributed import DistEnv
from ..engine.loop import fit
from ..models.imagenet import ImageNetSpec, from_spec
from .imagenet_eval import evaluate_modes

IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 training set; 5005 iterations per epoch at batch 256


@dataclass(frozen=True)
class PlateauConfig:
    """When the error "plateaus" (Section 3.4), divide the lr by 10. The paper gives no rule; this is
    ``torch.optim.lr_scheduler.ReduceLROnPlateau(mode="min", threshold_mode="rel")``'s."""
    factor: float = 0.1       # "divided by 10" (Section 3.4)
    patience: int = 3         # evaluations without improvement that are tolerated; one more drops the lr
    threshold: float = 0.01   # relative improvement of the best error that counts as an improvement
    cooldown: int = 0         # evaluations after a drop before bad ones are counted again
    min_lr: float = 1e-4      # no drop below: 0.1 -> 0.01 -> 0.001 -> 0.0001
    monitor: str = "test"     # "test": the validation error (what Fig. 4 plots); "train": training error

    def __post_init__(self):
        if not 0 < self.factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {self.factor}")
        if self.patience < 0 or self.cooldown < 0:
            raise ValueError("patience and cooldown are numbers of evaluations, >= 0")
        if self.monitor not in ("test", "train"):
            raise ValueError(f"monitor must be 'test' or 'train', got {self.monitor!r}")


def imagenet_train_config(**overrides) -> TrainConfig:
    """Section 3.4's optimisation settings as a :class:`~resnet_lib.train.TrainConfig`: no milestones, the
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
        err = test_err if self.cfg.monitor == "test" else train_err
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
    """What a run trains and tests on."""
    train: TensorSource | FolderSource
    val: TensorSource | FolderSource
    classes: list[str]
    names: list[str]
    mean: torch.Tensor
    aug: AugConfig
    val_images: object = None        # uint8 tensor (Tiny ImageNet) or a sequence of images, for the test modes
    val_labels: torch.Tensor | None = None
    skipped: int = 0


def tiny_imagenet_data(root=None, *, classes: int | None = None, train_per_class: int | None = None,
                       val_per_class: int | None = None, batch_size: int = 256, aug: AugConfig = TINY_AUG,
                       seed: int = 0, device="cpu", channels_last: bool = True, on_bad_image: str = "raise",
                       progress: bool = True) -> RunData:
    """Tiny ImageNet in memory with Section 3.4's pipeline at ``aug``'s sizes (default: all sizes / 4);
    the per-pixel mean is that of the training images used. ``channels_last``: the batches' memory format
    (fit puts the model in channels_last with bf16; fp32 runs gain nothing from it)."""
    train = load_tiny_imagenet(root, "train", classes, train_per_class, on_bad_image, progress)
    val = load_tiny_imagenet(root, "val", train.classes, val_per_class, on_bad_image, progress)
    mean = pixel_mean(train.images, aug.crop)
    cl = channels_last
    return RunData(TensorSource(train, batch_size, aug, mean, train=True, seed=seed, device=device, channels_last=cl),
                   TensorSource(val, max(batch_size, 100), aug, mean, train=False, device=device, channels_last=cl),
                   train.classes, train.names, mean, aug, val.images, val.labels, len(train.skipped) + len(val.skipped))


def folder_data(root, *, batch_size: int = 256, aug: AugConfig = AugConfig(), seed: int = 0, workers: int = 8,
                on_bad_image: str = "raise", mean: torch.Tensor | None = None, progress: bool = True) -> RunData:
    """``<root>/train`` and ``<root>/val`` in ImageFolder layout (full ImageNet: 1000 class folders each),
    read lazily with Section 3.4's pipeline at ``aug``'s sizes."""
    root = Path(root)
    train_s, val_s, classes = image_folders(root / "train", root / "val")
    if mean is None:
        mean = pixel_mean_of_files([p for p, _ in train_s], aug.crop, progress=progress)
    kw = dict(eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC, on_bad_image=on_bad_image)
    train = FolderSource(FolderDataset(train_s, aug, mean, train=True, seed=seed, **kw), batch_size, workers=workers)
    val = FolderSource(FolderDataset(val_s, aug, mean, train=False, seed=seed, **kw), batch_size, workers=workers)
    return RunData(train, val, classes, classes, mean, aug, LazyImages([p for p, _ in val_s]),
                   torch.tensor([y for _, y in val_s]))


# ---------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------

def train_imagenet(data: RunData, spec: ImageNetSpec, recipe: ImageNetRecipe = ImageNetRecipe(), *, run_dir=None,
                   device="auto", progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """Build the network of ``spec`` (seeded by ``recipe.train.seed``) and train it with ``fit`` and a
    :class:`PlateauSchedule`; returns ``(model, result)``. Runs under torchrun unchanged."""
    torch.manual_seed(recipe.train.seed)
    model = from_spec(spec)
    schedule = PlateauSchedule(recipe.train.lr, recipe.plateau)
    result = fit(model, data.train, data.val, recipe.train, run_dir=run_dir, schedule=schedule, device=device,
                 progress=progress, spec=spec.to_dict(), desc=f"ResNet-{spec.depth}")
    result["lr_drops"] = list(schedule.drops)
    return model, result


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
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="run folder (default: outputs/runs/imagenet_<depth>)")
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
    if tiny:
        data = tiny_imagenet_data(root, classes=a.classes, train_per_class=a.train_per_class,
                                  val_per_class=a.val_per_class, batch_size=a.batch_size, aug=aug, seed=a.seed,
                                  channels_last=use_bf16(pick_device(device), a.amp), on_bad_image=bad,
                                  progress=env.main)
        n_train = len(data.train.data)
    else:
        data = folder_data(root, batch_size=a.batch_size, aug=aug, seed=a.seed, workers=a.workers,
                           on_bad_image=bad, progress=env.main)
        n_train = len(data.train.dataset)
    epoch = max(1, n_train // a.batch_size)
    cfg = imagenet_train_config(iters=a.iters, batch_size=a.batch_size, lr=a.lr, seed=a.seed, amp=a.amp,
                                eval_every=min(a.eval_every or epoch, a.iters),
                                checkpoint_every=min(a.eval_every or epoch, a.iters))
    recipe = ImageNetRecipe(cfg, PlateauConfig(patience=a.patience), aug)
    spec = ImageNetSpec(a.depth, not a.plain, a.shortcut, len(data.classes), small_input=a.small_input)
    run_dir = Path(a.out) if a.out else output_dir() / "runs" / f"imagenet_{'plain' if a.plain else 'resnet'}{a.depth}"
    model, result = train_imagenet(data, spec, recipe, run_dir=run_dir, device=device, progress=env.main)
    summary = {"run_dir": str(run_dir), **result.get("final", {}), "lr_drops": result["lr_drops"],
               "world_size": env.world, "skipped_images": data.skipped + getattr(data.train, "skipped", 0)}
    if env.main and not a.no_test:
        tests = evaluate_modes(model, data.val_images, data.val_labels, aug, data.mean, device=device,
                               amp=a.amp, progress=True)
        atomic_write_json(run_dir / "tests.json", tests)
        summary["tests"] = tests
    if env.main:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
