"""The ImageNet data pipeline of Section 3.4, for any data set in ImageFolder layout and for Tiny ImageNet.

Training (Section 3.4, following AlexNet [21] and VGG [41]):

1. scale augmentation: the image is resized so that its shorter side is sampled uniformly in [256, 480];
2. a 224x224 crop is sampled from it or from its horizontal flip;
3. the per-pixel mean is subtracted;
4. the standard colour augmentation of [21] (PCA lighting) is added.

Tiny ImageNet's images are 64x64, so every size is scaled by 1/4 (:meth:`AugConfig.scaled`): shorter
side in [64, 120], 56x56 crops, test short side 64, multi-scale test sides {56, 64, 96, 120, 160}. The
ratio of crop to image, which is what the augmentation is about, is the paper's.

Two implementations of the same steps:

- per image (:func:`train_transform`, :class:`FolderDataset`, :class:`FolderSource`): images of any size,
  decoded lazily by a ``DataLoader``; the way full ImageNet is read;
- batched tensor ops (:func:`augment_batch`, :class:`TensorSource`) on a uint8 tensor held in memory (or on
  the GPU) when all images have one size, as Tiny ImageNet's do: one ``roi_align`` call crops and rescales
  a whole batch (airbench's habit).

Both sources follow the project's batch-source protocol (see ``resnet_lib.engine.loop``): ``batch_size`` is the
global batch, and ``batches(epoch, start, rank, world)`` yields this rank's share of each global batch,
drawn through a ``DistributedSampler`` whose epoch is set every epoch. Random choices are seeded by
(seed, epoch, batch) or (seed, epoch, image), so two ranks see exactly the images one process would.
"""
from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.ops import roi_align
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from ..base.errors import UserError
from ..base.paths import tiny_imagenet_dir
from .boxes import read_wnids, read_words

# AlexNet's colour augmentation [21, Section 4.1] uses the PCA of ImageNet's RGB pixel values. These are
# the eigenvalues/eigenvectors (pixels in [0, 1]) that fb.resnet.torch, Facebook AI Research's
# public Torch reimplementation of this paper's recipe (not the authors' code), ships; rows of
# _IMAGENET_EIGVEC are R, G, B, columns the principal components.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class AugConfig:
    """Sizes and strengths of the Section 3.4 pipeline; defaults are the paper's ImageNet values."""
    short_side: tuple[int, int] = (256, 480)  # px, training shorter side ~ U[256, 480] (Sec. 3.4, from [41])
    crop: int = 224                            # px, training and test crop (Sec. 3.4)
    flip: bool = True                          # random horizontal flip (Sec. 3.4)
    lighting_std: float = 0.1                  # std of AlexNet's PCA colour factors alpha (Sec. 3.4, [21])
    test_short_side: int = 256                 # px, shorter side before centre crop / 10 crops ([21])
    test_scales: tuple[int, ...] = (224, 256, 384, 480, 640)  # px, fully-conv test shorter sides (Sec. 3.4)

    def __post_init__(self):
        lo, hi = self.short_side
        if not 0 < lo <= hi:
            raise ValueError(f"short_side must be (low, high) with 0 < low <= high, got {self.short_side}")
        if self.crop > lo:
            raise ValueError(f"crop {self.crop} is larger than the smallest training short side {lo}: "
                             "a crop must fit in the resized image; lower crop or raise short_side[0]")
        if self.crop > self.test_short_side:
            raise ValueError(f"crop {self.crop} is larger than test_short_side {self.test_short_side}; "
                             "raise test_short_side to at least the crop")

    def scaled(self, factor: float) -> "AugConfig":
        """Every size times ``factor`` (rounded): ``AugConfig().scaled(1/4)`` is the Tiny ImageNet
        version for 64x64 images (crop 56, shorter side in [64, 120], test sides 56..160)."""
        r = lambda v: max(1, int(round(v * factor)))
        return dataclasses.replace(self, short_side=(r(self.short_side[0]), r(self.short_side[1])),
                                   crop=r(self.crop), test_short_side=r(self.test_short_side),
                                   test_scales=tuple(r(s) for s in self.test_scales))


TINY_AUG = AugConfig().scaled(1 / 4)  # Tiny ImageNet (64x64): all Section 3.4 sizes divided by 4


# ---------------------------------------------------------------------------------------------------
# Finding and reading images
# ---------------------------------------------------------------------------------------------------

def find_classes(root: str | Path) -> list[str]:
    """Class folders of an ImageFolder root (``root/<class>/**/<image>``), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; pass the folder that holds one "
                                "sub-folder per class (ImageFolder layout, e.g. .../train)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"image folder {root} has no class sub-folders; the ImageFolder layout is "
                         "root/<class>/<image>.JPEG")
    return classes


def list_images(root: str | Path, classes: Sequence[str] | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    """``([(path, label), ...], classes)`` for an ImageFolder root. ``classes`` fixes the label order
    (e.g. the training set's, for its validation set) and must all be present."""
    root = Path(root)
    found = find_classes(root)
    classes = list(classes) if classes is not None else found
    check_same_classes(classes, found, "expected", str(root))
    samples = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:  # as torchvision's ImageFolder: a class nothing can teach or test is a broken data set
            raise UserError(f"class folder {root / name} holds no images (extensions {', '.join(IMAGE_EXTENSIONS)}); "
                            "add its images, or remove the folder from every split so the class is left out")
        samples += [(p, label) for p in files]
    return samples, classes


def check_same_classes(a: Sequence[str], b: Sequence[str], name_a: str = "train", name_b: str = "val") -> None:
    """Train and validation must name the same classes, or labels would silently mean different things."""
    if sorted(a) != sorted(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ValueError(f"class lists differ: {len(only_a)} only in {name_a} ({only_a[:5]}...), "
                         f"{len(only_b)} only in {name_b} ({only_b[:5]}...); use the same class folders "
                         "in both, or pass classes= to select a common subset")


def read_image(path: str | Path) -> torch.Tensor:
    """uint8 RGB tensor (3, H, W); grayscale and CMYK images are converted to RGB. (Pillow, not
    torchvision.io, whose decoders are deprecated since torchvision 0.29.)"""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def _bad_image_error(path, err) -> ValueError:
    return ValueError(f"cannot decode image {path}: {err}. Remove or replace the file, or pass "
                      "on_bad_image='skip' (train-imagenet: --skip-bad-images) to leave undecodable images out and "
                      "count them")


def load_images(paths: Sequence[Path], size: int | None = None, on_bad_image: str = "raise",
                progress: bool = True) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode images into one uint8 tensor (N, 3, H, W), all of one size (``size``: resize to
    size x size when given, else every image must share the first one's size).

    Returns ``(images, kept, skipped)``: indices into ``paths`` that were kept, and the skipped paths
    (always empty when ``on_bad_image='raise'``)."""
    if on_bad_image not in ("raise", "skip"):
        raise ValueError(f"on_bad_image must be 'raise' or 'skip', got {on_bad_image!r}")
    out, kept, skipped = [], [], []
    for i, p in enumerate(tqdm(paths, desc="decode", disable=not progress, leave=False)):
        try:
            img = read_image(p)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            if on_bad_image == "raise":
                raise _bad_image_error(p, err) from None
            skipped.append(str(p))
            continue
        if size is not None and img.shape[-2:] != (size, size):
            img = TF.resize(img, [size, size], antialias=True)
        if out and img.shape != out[0].shape:
            raise ValueError(f"image {p} is {tuple(img.shape[-2:])}, others are {tuple(out[0].shape[-2:])}; "
                             "load_images needs one size: pass size= to resize them all")
        out.append(img)
        kept.append(i)
    if not out:
        raise ValueError(f"none of the {len(paths)} images could be decoded")
    return torch.stack(out), kept, skipped


# ---------------------------------------------------------------------------------------------------
# Tiny ImageNet (standard layout of the official tiny-imagenet-200.zip)
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


# ---------------------------------------------------------------------------------------------------
# Section 3.4 steps, one image at a time (any image size)
# ---------------------------------------------------------------------------------------------------

def resize_short_side(img: torch.Tensor, side: int) -> torch.Tensor:
    """Resize so that the shorter side is ``side`` px, keeping the aspect ratio."""
    h, w = img.shape[-2:]
    if min(h, w) == side:
        return img
    return TF.resize(img, [side], antialias=True)


def check_crop_fits(shape: Sequence[int], crop: int) -> None:
    h, w = shape[-2:]
    if crop > min(h, w):
        raise ValueError(f"crop {crop}x{crop} is larger than the resized image {h}x{w}; resize the shorter "
                         f"side to at least {crop} px first (AugConfig.short_side / test_short_side)")


def random_crop_flip(img: torch.Tensor, crop: int, flip: bool, g: torch.Generator | None = None) -> torch.Tensor:
    """A random ``crop`` x ``crop`` window, horizontally flipped with probability 1/2 (Sec. 3.4)."""
    check_crop_fits(img.shape, crop)
    h, w = img.shape[-2:]
    top = int(torch.randint(0, h - crop + 1, (), generator=g))
    left = int(torch.randint(0, w - crop + 1, (), generator=g))
    out = img[..., top:top + crop, left:left + crop]
    if flip and bool(torch.rand((), generator=g) < 0.5):
        out = out.flip(-1)
    return out


def lighting_shift(alpha: torch.Tensor, eigval: torch.Tensor, eigvec: torch.Tensor) -> torch.Tensor:
    """AlexNet's colour shift [21]: ``eigvec @ (alpha * eigval)``, one RGB offset per image
    (``alpha``: (..., 3)) added to every pixel."""
    return (alpha * eigval) @ eigvec.T


def pca_lighting(img: torch.Tensor, std: float, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC,
                 g: torch.Generator | None = None) -> torch.Tensor:
    """Add the PCA colour shift with ``alpha ~ N(0, std)`` to a float image in [0, 1] (3, H, W)."""
    eigval, eigvec = torch.as_tensor(eigval, dtype=img.dtype), torch.as_tensor(eigvec, dtype=img.dtype)
    alpha = torch.randn(3, generator=g, dtype=img.dtype) * std
    return img + lighting_shift(alpha, eigval, eigvec)[:, None, None]


def pca_basis(images: torch.Tensor, max_pixels: int = 2_000_000) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eigval, eigvec)`` of the RGB covariance of uint8 images (N, 3, H, W), pixels scaled to [0, 1],
    eigenvalues in decreasing order: the data's own basis for :func:`pca_lighting`."""
    px = images.permute(1, 0, 2, 3).reshape(3, -1)
    if px.shape[1] > max_pixels:  # a fixed stride: a deterministic sample is enough for a 3x3 covariance
        px = px[:, :: px.shape[1] // max_pixels]
    eigval, eigvec = torch.linalg.eigh(torch.cov(px.double() / 255))
    return eigval.flip(0).float(), eigvec.flip(1).float()


def pixel_mean(images: torch.Tensor, size: int) -> torch.Tensor:
    """The per-pixel mean (3, size, size) in [0, 1] of uint8 images: each resized so its shorter side is
    ``size`` and centre-cropped, i.e. the average crop. Section 3.4 subtracts it from every input."""
    total = torch.zeros(3, size, size, dtype=torch.float64)
    for chunk in images.split(1000):  # images share one size, so resize them a thousand at a time
        total += TF.center_crop(resize_short_side(chunk, size), [size, size]).double().sum(0)
    return (total / (255 * len(images))).float()


def mean_for(mean: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The mean image at an input's size: itself for crops, bilinearly resized for the larger whole
    images of fully-convolutional testing (the paper does not say; a smooth mean image barely changes)."""
    h, w = shape[-2:]
    if tuple(mean.shape[-2:]) == (h, w):
        return mean
    return F.interpolate(mean[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]


def train_transform(img: torch.Tensor, cfg: AugConfig, mean: torch.Tensor, eigval=IMAGENET_EIGVAL,
                    eigvec=IMAGENET_EIGVEC, g: torch.Generator | None = None) -> torch.Tensor:
    """Section 3.4 on one uint8 image: scale, crop or flip, to [0, 1], PCA lighting, minus the mean."""
    lo, hi = cfg.short_side
    side = int(torch.randint(lo, hi + 1, (), generator=g))
    x = random_crop_flip(resize_short_side(img, side), cfg.crop, cfg.flip, g)
    x = x.float() / 255
    x = pca_lighting(x, cfg.lighting_std, eigval, eigvec, g)
    return x - mean_for(mean, x.shape)


def eval_transform(img: torch.Tensor, cfg: AugConfig, mean: torch.Tensor) -> torch.Tensor:
    """The single centre view: shorter side to ``test_short_side``, centre ``crop``, minus the mean."""
    x = resize_short_side(img, cfg.test_short_side)
    check_crop_fits(x.shape, cfg.crop)
    x = TF.center_crop(x, [cfg.crop, cfg.crop]).float() / 255
    return x - mean_for(mean, x.shape)


# ---------------------------------------------------------------------------------------------------
# The same steps on a batch of equal-size images (Tiny ImageNet), as tensor ops
# ---------------------------------------------------------------------------------------------------

def sample_crop_boxes(n: int, height: int, width: int, cfg: AugConfig, g: torch.Generator | None = None):
    """For ``n`` images: the shorter side each is resized to, and the crop box in ORIGINAL pixel
    coordinates ``(x0, y0, x1, y1)`` that a ``cfg.crop`` window of the resized image covers."""
    lo, hi = cfg.short_side
    side = torch.randint(lo, hi + 1, (n,), generator=g)
    scale = side.double() / min(height, width)
    new_h, new_w = (height * scale).round(), (width * scale).round()
    if bool((new_h < cfg.crop).any() | (new_w < cfg.crop).any()):
        check_crop_fits((int(new_h.min()), int(new_w.min())), cfg.crop)
    top = (torch.rand(n, generator=g, dtype=torch.float64) * (new_h - cfg.crop + 1)).floor()
    left = (torch.rand(n, generator=g, dtype=torch.float64) * (new_w - cfg.crop + 1)).floor()
    sy, sx = new_h / height, new_w / width
    boxes = torch.stack([left / sx, top / sy, (left + cfg.crop) / sx, (top + cfg.crop) / sy], 1)
    return side, boxes.float()


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resampling of each box of each image to size x size in one ``roi_align`` call; with
    ``aligned=True`` and one sample per bin this equals resizing the image (bilinear, no antialias) and
    cropping. Training only enlarges Tiny ImageNet (short side 64 -> 64..120), where antialiasing is moot."""
    idx = torch.arange(len(images), dtype=boxes.dtype, device=images.device)[:, None]
    rois = torch.cat([idx, boxes.to(images.device)], 1)
    return roi_align(images, rois, output_size=size, spatial_scale=1.0, sampling_ratio=1, aligned=True)


@dataclass
class AugParams:
    """The random choices of :func:`augment_batch` for N images: crop boxes (original pixel coordinates),
    flips and PCA colour factors."""
    boxes: torch.Tensor  # (N, 4) float, x0 y0 x1 y1
    flip: torch.Tensor   # (N,) bool
    alpha: torch.Tensor  # (N, 3) float

    def select(self, positions: torch.Tensor) -> "AugParams":
        return AugParams(self.boxes[positions], self.flip[positions], self.alpha[positions])


def sample_aug_params(n: int, height: int, width: int, cfg: AugConfig,
                      g: torch.Generator | None = None) -> AugParams:
    """Random numbers on the CPU from ``g``, so the augmentation does not depend on the device."""
    _, boxes = sample_crop_boxes(n, height, width, cfg, g)
    flip = torch.rand(n, generator=g) < 0.5 if cfg.flip else torch.zeros(n, dtype=torch.bool)
    alpha = torch.randn(n, 3, generator=g) * cfg.lighting_std
    return AugParams(boxes, flip, alpha)


def apply_aug(images: torch.Tensor, p: AugParams, cfg: AugConfig, mean: torch.Tensor,
              eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC) -> torch.Tensor:
    """Crop and rescale, flip, to [0, 1], PCA lighting, minus the per-pixel mean (Section 3.4)."""
    dev = images.device
    x = crop_resize(images.float() / 255, p.boxes, cfg.crop)
    x = torch.where(p.flip.to(dev)[:, None, None, None], x.flip(-1), x)
    shift = lighting_shift(p.alpha, torch.as_tensor(eigval).float(), torch.as_tensor(eigvec).float())
    return x + shift.to(dev)[:, :, None, None] - mean.to(dev)


def augment_batch(images: torch.Tensor, cfg: AugConfig, mean: torch.Tensor, eigval=IMAGENET_EIGVAL,
                  eigvec=IMAGENET_EIGVEC, g: torch.Generator | None = None) -> torch.Tensor:
    """Section 3.4 on a uint8 batch (N, 3, H, W) of one size: scale augmentation, crop, flip, PCA
    lighting, minus the per-pixel mean."""
    n, _, h, w = images.shape
    return apply_aug(images, sample_aug_params(n, h, w, cfg, g), cfg, mean, eigval, eigvec)


def center_batch(images: torch.Tensor, cfg: AugConfig, mean: torch.Tensor) -> torch.Tensor:
    """The single centre view of a uint8 batch (see :func:`eval_transform`)."""
    x = resize_short_side(images, cfg.test_short_side)
    check_crop_fits(x.shape, cfg.crop)
    x = TF.center_crop(x, [cfg.crop, cfg.crop]).float() / 255
    return x - mean.to(x.device)


# ---------------------------------------------------------------------------------------------------
# Batch sources (the project's protocol; see resnet_lib.engine.loop)
# ---------------------------------------------------------------------------------------------------

def _seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, epoch, batch ...), stable across processes and platforms."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) + 0x632BE59BD9B4E019 + (h << 6) + (h >> 2))) & 0x7FFFFFFFFFFFFFFF
    return h


def rank_batches(n: int, batch_size: int, epoch: int, shuffle: bool, seed: int, rank: int, world: int,
                 drop_last: bool) -> list[list[int]]:
    """This rank's share of each global batch of one epoch, as index lists.

    A ``DistributedSampler`` (epoch set by ``set_epoch``) deals the shuffled indices round-robin: rank r
    gets positions r, r + world, ... Its slice ``[k*b, (k+1)*b)`` (b = batch_size / world) is therefore
    its share of global batch k = permutation[k*B:(k+1)*B], and the union over ranks is exactly the
    batch one process would take."""
    if batch_size % world:
        raise ValueError(f"global batch {batch_size} is not divisible by {world} processes; choose a batch "
                         "size that is a multiple of the number of processes (the global batch is kept)")
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed,
                                 drop_last=False)
    sampler.set_epoch(epoch)
    mine = list(sampler)
    b = batch_size // world
    full = n // batch_size
    out = [mine[k * b:(k + 1) * b] for k in range(full)]
    rest = n - full * batch_size
    if rest and not drop_last:  # the last, short global batch: positions r, r + world, ... < rest
        out.append(mine[full * b: full * b + len(range(rank, rest, world))])
    return out


class TensorSource:
    """Batches from images held in memory (uint8, one size), augmented as tensor ops.

    ``train=True``: shuffled each epoch, full global batches only, Section 3.4 augmentation.
    ``train=False``: in order, every image once, the single centre view."""

    def __init__(self, data: ImageSet, batch_size: int, cfg: AugConfig, mean: torch.Tensor, *,
                 train: bool = True, seed: int = 0, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC,
                 device: str | torch.device = "cpu", channels_last: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if train and len(data) < batch_size:
            raise ValueError(f"{len(data)} training images are fewer than one batch of {batch_size}; "
                             "lower the batch size or use more images")
        self.data, self.batch_size, self.cfg, self.train, self.seed = data, batch_size, cfg, train, seed
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.mean = mean.to(self.device)
        self.eigval, self.eigvec = eigval, eigvec
        self.channels_last = channels_last

    def __len__(self) -> int:
        n, b = len(self.data), self.batch_size
        return n // b if self.train else math.ceil(n / b)

    def batches(self, epoch: int, start: int = 0, rank: int = 0, world: int = 1) -> Iterator:
        shares = rank_batches(len(self.data), self.batch_size, epoch, self.train, self.seed, rank, world,
                              drop_last=self.train)
        for k in range(start, len(shares)):
            idx = torch.tensor(shares[k], dtype=torch.long, device=self.device)
            yield self._views(idx, epoch, k, rank, world), self.labels[idx]

    def _views(self, idx, epoch, k, rank, world):
        imgs = self.images[idx]
        if self.train:
            # Draw the whole global batch's random numbers and keep this rank's positions (r, r + world,
            # ...), so that any number of ranks sees the same augmented images as one process.
            g = torch.Generator().manual_seed(_seed(self.seed, epoch, k))
            h, w = imgs.shape[-2:]
            params = sample_aug_params(self.batch_size, h, w, self.cfg, g)
            params = params.select(torch.arange(rank, self.batch_size, world))
            x = apply_aug(imgs, params, self.cfg, self.mean, self.eigval, self.eigvec)
        else:
            x = center_batch(imgs, self.cfg, self.mean)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


# ---------------------------------------------------------------------------------------------------
# Any ImageFolder data set (full ImageNet): images decoded lazily, one at a time, by DataLoader workers
# ---------------------------------------------------------------------------------------------------

def image_folders(train_root: str | Path, val_root: str | Path):
    """``(train_samples, val_samples, classes)`` of two ImageFolder roots, checking that both name
    the same classes (labels follow the sorted class-folder names)."""
    _, classes = list_images(train_root)
    check_same_classes(classes, find_classes(val_root), str(train_root), str(val_root))
    train, _ = list_images(train_root, classes)
    val, _ = list_images(val_root, classes)
    return train, val, classes


def pixel_mean_of_files(paths: Sequence[Path], size: int, max_images: int = 10_000,
                        progress: bool = True) -> torch.Tensor:
    """:func:`pixel_mean` of up to ``max_images`` files spread evenly over ``paths`` (any sizes)."""
    step = max(1, len(paths) // max_images)
    total, n = torch.zeros(3, size, size, dtype=torch.float64), 0
    for p in tqdm(list(paths)[::step], desc="pixel mean", disable=not progress, leave=False):
        try:
            img = read_image(p)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            continue  # an undecodable file does not belong in the mean; the loaders report it
        total += TF.center_crop(resize_short_side(img, size), [size, size]).double()
        n += 1
    if n == 0:
        raise ValueError("no image could be decoded for the pixel mean")
    return (total / (255 * n)).float()


class LazyImages:
    """A sequence of uint8 images read from ``paths`` on access (for testing on full ImageNet)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return read_image(self.paths[i])


class FolderDataset(Dataset):
    """``(path, label)`` samples read and transformed on demand. Set ``epoch`` before each epoch: the
    random choices for image i come from a generator seeded by (seed, epoch, i), the same in every worker
    and rank. With ``on_bad_image='skip'`` an undecodable image yields ``None`` (see :func:`collate`)."""

    def __init__(self, samples, cfg: AugConfig, mean: torch.Tensor, *, train: bool, seed: int = 0,
                 eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC, on_bad_image: str = "raise"):
        if on_bad_image not in ("raise", "skip"):
            raise ValueError(f"on_bad_image must be 'raise' or 'skip', got {on_bad_image!r}")
        self.samples, self.cfg, self.mean, self.train, self.seed = list(samples), cfg, mean, train, seed
        self.eigval, self.eigvec, self.on_bad_image, self.epoch = eigval, eigvec, on_bad_image, 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        try:
            img = read_image(path)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            if self.on_bad_image == "raise":
                raise _bad_image_error(path, err) from None
            return None
        if self.train:
            g = torch.Generator().manual_seed(_seed(self.seed, self.epoch, i))
            x = train_transform(img, self.cfg, self.mean, self.eigval, self.eigvec, g)
        else:
            x = eval_transform(img, self.cfg, self.mean)
        return x, label


def collate(items):
    """Stack the decodable samples; also return how many were skipped."""
    good = [it for it in items if it is not None]
    if not good:
        return None, None, len(items)
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good]), len(items) - len(good)


class FolderSource:
    """Batches from an ImageFolder data set of any image sizes (the way full ImageNet is read):
    ``DataLoader`` workers decode and transform, a ``DistributedSampler`` (epoch set every epoch) deals the
    global batch across ranks. ``skipped`` counts undecodable images left out (``on_bad_image='skip'``)."""

    def __init__(self, dataset: FolderDataset, batch_size: int, *, workers: int = 4, channels_last: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if dataset.train and len(dataset) < batch_size:
            raise ValueError(f"{len(dataset)} training images are fewer than one batch of {batch_size}")
        self.dataset, self.batch_size, self.workers = dataset, batch_size, workers
        self.train, self.channels_last, self.skipped = dataset.train, channels_last, 0

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.train else math.ceil(n / b)

    def batches(self, epoch: int, start: int = 0, rank: int = 0, world: int = 1) -> Iterator:
        self.dataset.epoch = epoch  # workers are started below, after this, so they see it
        shares = rank_batches(len(self.dataset), self.batch_size, epoch, self.train, self.dataset.seed,
                              rank, world, drop_last=self.train)[start:]
        loader = DataLoader(self.dataset, batch_sampler=shares, num_workers=self.workers, collate_fn=collate,
                            pin_memory=torch.cuda.is_available())
        for x, y, skipped in loader:
            self.skipped += skipped
            if x is None:
                continue
            yield (x.contiguous(memory_format=torch.channels_last) if self.channels_last else x), y


def png_bytes(img: torch.Tensor) -> bytes:
    """A float image in [0, 1] (3, H, W) (values outside are clipped) or a uint8 one, as PNG file bytes,
    e.g. for an ``ipywidgets.Image``."""
    if img.dtype != torch.uint8:
        img = (img.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    buf = io.BytesIO()
    Image.fromarray(img.cpu().permute(1, 2, 0).numpy()).save(buf, format="PNG")
    return buf.getvalue()
