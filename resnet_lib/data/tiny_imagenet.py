"""Tiny ImageNet (the standard layout of the official tiny-imagenet-200.zip) held in memory as uint8 images."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..base.errors import UserError
from ..base.paths import tiny_imagenet_dir
from .boxes import read_wnids, read_words
from .images import check_same_classes, find_classes, load_images

# ---------------------------------------------------------------------------------------------------

@dataclass
class ImageSet:
    """Images held in memory: uint8 ``images`` (N, 3, H, W), int64 ``labels``, class ids, names."""
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    names: list[str]
    skipped: list[str] = dataclasses.field(default_factory=list)
    paths: list[str] = dataclasses.field(default_factory=list)  # each image's file, when loaded from files

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: torch.Tensor) -> "ImageSet":
        """The images at positions ``idx`` (same classes)."""
        paths = [self.paths[i] for i in idx.tolist()] if self.paths else []
        return ImageSet(self.images[idx], self.labels[idx], self.classes, self.names, [], paths)


def _tiny_classes(root: Path, classes: int | Sequence[str] | None) -> list[str]:
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file():
        raise FileNotFoundError(f"{wnids_file} is missing: {root} is not Tiny ImageNet's standard layout "
                                "(unzip the official tiny-imagenet-200.zip and pass its folder)")
    wnids = read_wnids(root)
    if classes is None:
        return wnids
    if isinstance(classes, int):
        if not 0 < classes <= len(wnids):
            raise ValueError(f"classes={classes}: Tiny ImageNet has {len(wnids)} classes; pass 1..{len(wnids)}")
        return wnids[:classes]
    unknown = sorted(set(classes) - set(wnids))
    if unknown:
        raise ValueError(f"unknown class ids {unknown[:5]}; they must be listed in {wnids_file}")
    return list(classes)


def _class_names(root: Path, wnids: Sequence[str]) -> list[str]:
    words = read_words(root) if (root / "words.txt").is_file() else {}
    return [words.get(w, w) for w in wnids]


def _per_class(samples: list[tuple[Path, int]], limit: int | None) -> list[tuple[Path, int]]:
    if limit is None:
        return samples
    count: dict[int, int] = {}
    out = []
    for p, y in samples:
        if count.get(y, 0) < limit:
            out.append((p, y))
            count[y] = count.get(y, 0) + 1
    return out


def tiny_imagenet_samples(root: str | Path, split: str, classes: Sequence[str]) -> list[tuple[Path, int]]:
    """``[(path, label)]`` of Tiny ImageNet's ``train`` (``train/<wnid>/images``) or ``val``
    (``val/images`` labelled by ``val/val_annotations.txt``)."""
    root = Path(root)
    index = {w: i for i, w in enumerate(classes)}
    if split == "train":
        train_wnids = find_classes(root / "train")
        missing = sorted(set(classes) - set(train_wnids))
        if missing:
            raise ValueError(f"classes {missing[:5]} have no folder under {root / 'train'}; the data set "
                             "is incomplete: unzip tiny-imagenet-200.zip again")
        found = {w: sorted((root / "train" / w / "images").glob("*.JPEG"), key=_natural) for w in classes}
        empty = [w for w in classes if not found[w]]
        if empty:
            raise UserError(f"class folder {root / 'train' / empty[0] / 'images'} holds no .JPEG images"
                            f"{f' (nor do {len(empty) - 1} more)' if len(empty) > 1 else ''}: the data set is "
                            "incomplete; unzip tiny-imagenet-200.zip again, or choose other classes")
        return [(p, index[w]) for w in classes for p in found[w]]
    if split == "val":
        ann = root / "val" / "val_annotations.txt"
        if not ann.is_file():
            raise FileNotFoundError(f"{ann} is missing; Tiny ImageNet's val split is labelled by it "
                                    "(unzip the official tiny-imagenet-200.zip again)")
        rows = [line.split("\t") for line in ann.read_text().splitlines() if line.strip()]
        check_same_classes(_tiny_classes(root, None), sorted({r[1] for r in rows}), "wnids.txt", str(ann))
        rows = sorted((r for r in rows if r[1] in index), key=lambda r: _natural(Path(r[0])))
        return [(root / "val" / "images" / r[0], index[r[1]]) for r in rows]
    raise ValueError(f"split must be 'train' or 'val', got {split!r}")


def _natural(p: Path):
    """``n01443537_10`` after ``n01443537_9``: sort by the trailing number, so 'the first k images'
    means what it says."""
    stem, _, num = p.stem.rpartition("_")
    return (stem, int(num)) if num.isdigit() else (p.stem, 0)


def load_tiny_imagenet(root: str | Path | None = None, split: str = "train",
                       classes: int | Sequence[str] | None = None, per_class: int | None = None,
                       on_bad_image: str = "raise", progress: bool = True) -> ImageSet:
    """Tiny ImageNet's ``train`` or ``val`` split in memory, as uint8 64x64 images.

    ``classes``: the first N ids of ``wnids.txt``, or a list of ids (default: all 200);
    ``per_class``: at most this many images per class (the first ones, in file-number order);
    ``root``: default ``resnet_lib.base.paths.tiny_imagenet_dir()``."""
    root = tiny_imagenet_dir(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Tiny ImageNet folder {root} does not exist; unzip the official "
                                "tiny-imagenet-200.zip and pass its folder (or set $TINY_IMAGENET)")
    wnids = _tiny_classes(root, classes)
    samples = _per_class(tiny_imagenet_samples(root, split, wnids), per_class)
    if not samples:
        raise ValueError(f"no {split} images found under {root} for classes {wnids[:5]}...")
    images, kept, skipped = load_images([p for p, _ in samples], on_bad_image=on_bad_image, progress=progress)
    labels = torch.tensor([samples[i][1] for i in kept], dtype=torch.long)
    return ImageSet(images, labels, wnids, _class_names(root, wnids), skipped, [str(samples[i][0]) for i in kept])
