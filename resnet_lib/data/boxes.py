"""Tiny ImageNet's bounding boxes, and the box arithmetic the localization and detection code shares.

The annotation files (the dataset's standard layout, which the official ``tiny-imagenet-200.zip`` and the
project's subset both follow):

- ``train/<wnid>/<wnid>_boxes.txt``: ``file x0 y0 x1 y1`` per line, one box per image;
- ``val/val_annotations.txt``: ``file wnid x0 y0 x1 y1`` per line.

Coordinates there are *inclusive* pixel indices (``0 0 63 63`` is the whole 64x64 image). Everything in
this library uses torchvision's continuous ``(x0, y0, x1, y1)`` convention instead, where the far edge
is exclusive: the reader adds 1 to ``x1`` and ``y1``, so the whole image is ``(0, 0, 64, 64)`` and a
box's area is its pixel count (the same +1 that ILSVRC's own evaluation code uses for IoU).

Box arithmetic comes from torchvision: ``torchvision.ops`` (IoU, clipping, NMS) and the RPN's box
coder (``torchvision.models.detection._utils.BoxCoder``), which Faster R-CNN itself uses.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torchvision
from matplotlib.patches import Rectangle
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import roi_align

from ..base.paths import tiny_imagenet_dir
from .images import read_image

IMAGE_SIZE = 64  # Tiny ImageNet images are 64x64


# ----------------------------------------------------------------------------- reading the annotation files

@dataclass(frozen=True)
class BoxRecord:
    """One annotated image: its file, its class (wnid) and its box in continuous xyxy pixels."""
    image: Path
    wnid: str
    box: tuple[float, float, float, float]


def read_wnids(root: str | os.PathLike | None = None) -> list[str]:
    """The class list, in the order of ``wnids.txt`` (that order gives the label indices)."""
    path = tiny_imagenet_dir(root) / "wnids.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; point TINY_IMAGENET (or root=) at an unzipped "
                                "tiny-imagenet-200 folder, which holds wnids.txt")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_words(root: str | os.PathLike | None = None) -> dict[str, str]:
    """wnid -> its first English name (``words.txt``), e.g. ``n01443537 -> goldfish``."""
    path = tiny_imagenet_dir(root) / "words.txt"
    names = {}
    for line in path.read_text().splitlines():
        wnid, _, words = line.partition("\t")
        names[wnid.strip()] = words.split(",")[0].strip()
    return names


def parse_box(fields: list[str], where: str, size: int = IMAGE_SIZE) -> tuple[float, float, float, float]:
    """Four inclusive pixel coordinates -> a continuous xyxy box; ``where`` (``file:line``) names the line
    in every error."""
    try:
        x0, y0, x1, y1 = (int(f) for f in fields)
    except ValueError:
        raise ValueError(f"{where}: box {' '.join(fields)!r} is not four integers x0 y0 x1 y1; "
                         "fix or delete that line") from None
    if x1 < x0 or y1 < y0:
        raise ValueError(f"{where}: box ({x0}, {y0}, {x1}, {y1}) has x1 < x0 or y1 < y0; the format is "
                         "x0 y0 x1 y1 with the top-left corner first: swap the corners on that line")
    if x0 < 0 or y0 < 0 or x1 >= size or y1 >= size:
        raise ValueError(f"{where}: box ({x0}, {y0}, {x1}, {y1}) lies outside the {size}x{size} image "
                         f"(inclusive pixel coordinates run from 0 to {size - 1}); clip it to the image")
    return float(x0), float(y0), float(x1 + 1), float(y1 + 1)


def _check_image(image: Path, where: str) -> Path:
    if not image.is_file():
        raise FileNotFoundError(f"{where}: names image {image.name}, which is not at {image}; "
                                "restore the image or delete that line")
    return image


def _annotation_lines(path: Path, form: str):
    """``(where, fields)`` of each non-blank line of an annotation file, checked to have ``form``'s fields."""
    n_fields = len(form.split())
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where, fields = f"{path}:{n}", line.split()
        if len(fields) != n_fields:
            raise ValueError(f"{where}: expected '{form}' ({n_fields} fields), got {len(fields)}: {line!r}")
        yield where, fields


def read_train_boxes(wnid: str, root: str | os.PathLike | None = None, size: int = IMAGE_SIZE) -> list[BoxRecord]:
    """The boxes of one training class, from ``train/<wnid>/<wnid>_boxes.txt``."""
    folder = tiny_imagenet_dir(root) / "train" / wnid
    path = folder / f"{wnid}_boxes.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: class {wnid} has no box file; check that {wnid} is in "
                                "wnids.txt and that the train folder was unzipped completely")
    records = []
    for where, fields in _annotation_lines(path, "file x0 y0 x1 y1"):
        image = _check_image(folder / "images" / fields[0], where)
        records.append(BoxRecord(image, wnid, parse_box(fields[1:], where, size)))
    return records


def read_val_annotations(root: str | os.PathLike | None = None, classes: list[str] | None = None,
                         size: int = IMAGE_SIZE) -> list[BoxRecord]:
    """All lines of ``val/val_annotations.txt``. A wnid that is not in ``classes`` (default: ``wnids.txt``)
    is an error naming the line; pick a subset of classes afterwards with ``select``."""
    base = tiny_imagenet_dir(root)
    path = base / "val" / "val_annotations.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; unzip the val folder of tiny-imagenet-200 there")
    known = set(classes if classes is not None else read_wnids(base))
    records = []
    for where, fields in _annotation_lines(path, "file wnid x0 y0 x1 y1"):
        if fields[1] not in known:
            raise ValueError(f"{where}: class {fields[1]} is not in the class list (wnids.txt); "
                             "add it to wnids.txt or delete that line")
        image = _check_image(base / "val" / "images" / fields[0], where)
        records.append(BoxRecord(image, fields[1], parse_box(fields[2:], where, size)))
    return records


# ----------------------------------------------------------------------------- images and boxes as tensors

@dataclass
class BoxSet:
    """Images with one box each, held as tensors: ``images`` uint8 (N, 3, H, W), ``labels`` (N,) indices
    into ``classes`` (wnids), ``boxes`` (N, 4) continuous xyxy pixels."""
    images: Tensor
    labels: Tensor
    boxes: Tensor
    classes: list[str]
    files: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"BoxSet({len(self)} images {tuple(self.images.shape[-2:])}, {len(self.classes)} classes, "
                f"mean box area {box_area_fraction(self.boxes, self.images.shape[-1]).mean():.2f} of the image)")


def read_sized_image(path: Path, size: int = IMAGE_SIZE) -> torch.Tensor:
    """``images.read_image`` (uint8, 3 x H x W), checked to be the size its boxes were read for."""
    img = read_image(path)
    if img.shape[-2:] != (size, size):
        raise ValueError(f"{path} is {img.shape[-1]}x{img.shape[-2]}, but its boxes were read for {size}x{size}; "
                         "pass the images' true size as size=")
    return img


def select(records: list[BoxRecord], classes: list[str], per_class: int | None = None) -> list[BoxRecord]:
    """The records of ``classes``, at most ``per_class`` each, in file order."""
    counts = dict.fromkeys(classes, 0)
    out = []
    for r in records:
        if r.wnid in counts and (per_class is None or counts[r.wnid] < per_class):
            counts[r.wnid] += 1
            out.append(r)
    return out


def to_box_set(records: list[BoxRecord], classes: list[str], size: int = IMAGE_SIZE) -> BoxSet:
    if not records:
        raise ValueError("no annotated images selected; check the class list and per_class")
    index = {w: i for i, w in enumerate(classes)}
    missing = sorted({r.wnid for r in records} - set(index))
    if missing:
        raise ValueError(f"classes {missing[:3]} of these records are not in the class list; pass them in classes=")
    images = torch.stack([read_sized_image(r.image, size) for r in records])
    return BoxSet(images.contiguous(), torch.tensor([index[r.wnid] for r in records]),
                  torch.tensor([r.box for r in records], dtype=torch.float32), list(classes),
                  [r.image.name for r in records])


def load_box_sets(num_classes: int = 10, train_per_class: int = 100, val_per_class: int = 50,
                  root: str | os.PathLike | None = None) -> tuple[BoxSet, BoxSet]:
    """(train, val) for the first ``num_classes`` classes of ``wnids.txt``, with their boxes.

    The project's subset has 100 training and 50 validation images per class; the official zip has 500 and 50.
    """
    wnids = read_wnids(root)
    if not 1 <= num_classes <= len(wnids):
        raise ValueError(f"num_classes must be between 1 and {len(wnids)} (the classes in wnids.txt), got {num_classes}")
    classes = wnids[:num_classes]
    train = [r for w in classes for r in read_train_boxes(w, root)[:train_per_class]]
    val = select(read_val_annotations(root), classes, val_per_class)
    return to_box_set(train, classes), to_box_set(val, classes)


# ----------------------------------------------------------------------------- box arithmetic (torchvision)

box_iou = torchvision.ops.box_iou
nms = torchvision.ops.nms
clip_boxes = torchvision.ops.clip_boxes_to_image


def box_area_fraction(boxes: Tensor, size: int) -> Tensor:
    return torchvision.ops.box_area(boxes) / float(size * size)


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of ``a[i]`` with ``b[i]`` (the diagonal of ``box_iou``), for (N, 4) boxes."""
    if a.shape != b.shape:
        raise ValueError(f"paired_iou needs boxes of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    # torchvision's box_iou gives all pairs; its diagonal, chunk by chunk, keeps memory linear in N.
    chunks = [box_iou(x, y).diagonal() for x, y in zip(a.split(1024), b.split(1024))]
    return torch.cat(chunks) if chunks else a.new_zeros(0)


def check_boxes(boxes: Tensor, height: int, width: int, where: str = "boxes") -> Tensor:
    """Raise unless every row of (N, 4) ``boxes`` is a valid xyxy box inside an ``height`` x ``width`` image."""
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{where}: expected an (N, 4) tensor of x0 y0 x1 y1 boxes, got shape {tuple(boxes.shape)}")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{where}: box {i} {boxes[i].tolist()} has x1 < x0 or y1 < y0; give the top-left corner first")
    out = (boxes[:, :2] < 0).any(1) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
    if out.any():
        i = int(out.nonzero()[0])
        raise ValueError(f"{where}: box {i} {boxes[i].tolist()} lies outside the {width}x{height} image; "
                         "clip it with resnet_lib.data.boxes.clip_boxes")
    return boxes


# Faster R-CNN's parameterisation (Ren et al., Eq. 2; used by the paper's appendix): dx, dy relative to the
# anchor's size, dw, dh as log ratios. Unit weights, as for the RPN.
_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))


def encode(boxes: Tensor, anchors: Tensor) -> Tensor:
    """Regression targets (N, 4) that take ``anchors`` to ``boxes`` (both (N, 4) xyxy)."""
    return _coder.encode_single(boxes, anchors)


def decode(deltas: Tensor, anchors: Tensor) -> Tensor:
    """Boxes (N, 4) from ``deltas`` (N, 4) applied to ``anchors`` (N, 4); inverse of ``encode``."""
    return _coder.decode_single(deltas, anchors)


# ----------------------------------------------------------------------------- pictures

def draw_boxes(ax, image: Tensor, layers: list[tuple[Tensor, str, list[str] | None]], title: str | None = None,
               fontsize: int = 7) -> None:
    """Show uint8 ``image`` (3, H, W) on a matplotlib ``ax`` with boxes drawn over it: each layer is
    ``(boxes (k, 4), colour, labels or None)``, e.g. the truth in green and a prediction in red."""
    ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    for boxes, colour, labels in layers:
        for k, (x0, y0, x1, y1) in enumerate(boxes.reshape(-1, 4).tolist()):
            # imshow puts pixel i's centre at i: continuous edges sit half a pixel before
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.6))
            if labels:
                ax.text(x0 - 0.5, y0 - 1, labels[k], color="white", fontsize=fontsize, va="bottom",
                        bbox=dict(facecolor=colour, alpha=0.8, pad=0.5, linewidth=0))
    if title:
        ax.set_title(title, fontsize=fontsize + 1)
    ax.set_axis_off()


def box_grid(images: Tensor, layers: list[list[tuple[Tensor, str, list[str] | None]]], titles: list[str] | None = None,
             ncols: int = 6, cell: float = 2.0):
    """A grid of ``draw_boxes`` pictures, one per image; returns the figure."""
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + 0.3), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < n:
            draw_boxes(ax, images[k], layers[k], titles[k] if titles else None)
        else:
            ax.set_axis_off()
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- crops that carry their boxes

def crop_boxes(boxes: Tensor, windows: Tensor, size: int) -> Tensor:
    """Boxes seen through crop ``windows`` (N, 4) that are resized to ``size`` x ``size``: shifted by the
    window's corner, scaled, clipped to the crop (the part of an object inside the crop is its box)."""
    x0, y0 = windows[:, 0:1], windows[:, 1:2]
    scale = size / (windows[:, 2:3] - windows[:, 0:1])
    moved = (boxes - torch.cat([x0, y0, x0, y0], 1)) * scale
    return clip_boxes(moved, (size, size))


def crop_windows(images: Tensor, windows: Tensor, size: int) -> Tensor:
    """Cut each image's window (N, 4) out and resize it to ``size`` x ``size`` in one batched call
    (torchvision's RoIAlign, bilinear); returns float images in 0..255."""
    rois = torch.cat([torch.arange(len(windows), dtype=windows.dtype)[:, None], windows], 1)
    return roi_align(images.float(), rois, output_size=size, spatial_scale=1.0, sampling_ratio=2, aligned=True)


def random_windows(n: int, size: int, min_crop: int, g: torch.Generator) -> Tensor:
    """Random square windows of side ``min_crop``..``size`` px inside ``size`` x ``size`` images."""
    side = torch.randint(min_crop, size + 1, (n,), generator=g).float()
    x0 = (torch.rand(n, generator=g) * (size - side + 1)).floor()
    y0 = (torch.rand(n, generator=g) * (size - side + 1)).floor()
    return torch.stack([x0, y0, x0 + side, y0 + side], 1)


def random_crops(images: Tensor, boxes: Tensor, min_crop: int, flip: bool, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random square crops of ``min_crop`` to full size, resized back to the image size, and random
    mirror images, with the boxes moved along (Sec. 3.4's random crops, with its scale augmentation in
    the form of a random crop size). Returns float images in 0..255 and the boxes."""
    n, _, h, w = images.shape
    if h != w:
        raise ValueError(f"random_crops expects square images, got {h}x{w}; resize or pad them first")
    check_boxes(boxes, h, w, "random_crops")
    windows = random_windows(n, w, min_crop, g)
    out = crop_windows(images, windows, w)
    new_boxes = crop_boxes(boxes, windows, w)
    if flip:
        mirror = torch.rand(n, generator=g) < 0.5
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
        flipped = torch.stack([w - new_boxes[:, 2], new_boxes[:, 1], w - new_boxes[:, 0], new_boxes[:, 3]], 1)
        new_boxes = torch.where(mirror[:, None], flipped, new_boxes)
    return out, new_boxes


def center_window(n: int, size: int, crop: int) -> Tensor:
    o = (size - crop) / 2
    return torch.tensor([[o, o, o + crop, o + crop]]).expand(n, 4).clone()
