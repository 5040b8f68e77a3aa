"""Batch sources for the ImageNet pipeline (the project's protocol; see ``resnet_lib.engine.loop``): images
held in memory and augmented as tensor ops (:class:`TensorSource`), or any ImageFolder data set decoded lazily
by DataLoader workers (:class:`FolderSource`, the way full ImageNet is read). ``batch_size`` is the global
batch; ``batches(epoch, start, rank, world)`` yields this rank's share of each global batch."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from .imagenet import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    AugConfig,
    apply_aug,
    center_batch,
    eval_transform,
    resize_short_side,
    sample_aug_params,
    train_transform,
)
from .images import DECODE_ERRORS, bad_image_error, read_image
from .tiny_imagenet import ImageSet


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
# ---------------------------------------------------------------------------------------------------
# Any ImageFolder data set (full ImageNet): images decoded lazily, one at a time, by DataLoader workers
# ---------------------------------------------------------------------------------------------------

def pixel_mean_of_files(paths: Sequence[Path], size: int, max_images: int = 10_000,
                        progress: bool = True) -> torch.Tensor:
    """:func:`pixel_mean` of up to ``max_images`` files spread evenly over ``paths`` (any sizes)."""
    step = max(1, len(paths) // max_images)
    total, n = torch.zeros(3, size, size, dtype=torch.float64), 0
    for p in tqdm(list(paths)[::step], desc="pixel mean", disable=not progress, leave=False):
        try:
            img = read_image(p)
        except DECODE_ERRORS:
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
        except DECODE_ERRORS as err:
            if self.on_bad_image == "raise":
                raise bad_image_error(path, err) from None
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
