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

This module holds the steps; the sources are in ``data.imagenet_sources``, reading image files in
``data.images`` and Tiny ImageNet in ``data.tiny_imagenet``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align
from torchvision.transforms.v2 import functional as TF

# AlexNet's colour augmentation [21, Section 4.1] uses the PCA of ImageNet's RGB pixel values. These are
# the eigenvalues/eigenvectors (pixels in [0, 1]) that fb.resnet.torch, Facebook AI Research's
# public Torch reimplementation of this paper's recipe (not the authors' code), ships; rows of
# _IMAGENET_EIGVEC are R, G, B, columns the principal components.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))


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
