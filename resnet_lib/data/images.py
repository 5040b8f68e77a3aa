"""Finding and reading image files: ImageFolder layouts (``root/<class>/<image>``), decoding to uint8 tensors
with a clear error for an undecodable file, and PNG bytes for display."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from ..base.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError)  # what Pillow raises on a bad file


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


def bad_image_error(path, err) -> ValueError:
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
        except DECODE_ERRORS as err:
            if on_bad_image == "raise":
                raise bad_image_error(p, err) from None
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


def image_folders(train_root: str | Path, val_root: str | Path):
    """``(train_samples, val_samples, classes)`` of two ImageFolder roots, checking that both name
    the same classes (labels follow the sorted class-folder names)."""
    _, classes = list_images(train_root)
    check_same_classes(classes, find_classes(val_root), str(train_root), str(val_root))
    train, _ = list_images(train_root, classes)
    val, _ = list_images(val_root, classes)
    return train, val, classes


def png_bytes(img: torch.Tensor) -> bytes:
    """A float image in [0, 1] (3, H, W) (values outside are clipped) or a uint8 one, as PNG file bytes,
    e.g. for an ``ipywidgets.Image``."""
    if img.dtype != torch.uint8:
        img = (img.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    buf = io.BytesIO()
    Image.fromarray(img.cpu().permute(1, 2, 0).numpy()).save(buf, format="PNG")
    return buf.getvalue()
