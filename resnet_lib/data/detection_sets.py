"""Detection data sets for notebook 07: scenes composed from Tiny ImageNet's boxed objects (a stand-in for
VOC/COCO when no detection set is at hand), and PASCAL VOC read through torchvision's ``VOCDetection``.
Each image's target is torchvision's detection dict ``{"boxes": (K, 4) xyxy pixels, "labels": (K,) 1..C}``."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.datasets import VOCDetection

from . import boxes as B

# ----------------------------------------------------------------------------- composed scenes

@dataclass(frozen=True)
class SceneConfig:
    """Scenes made of real objects: crops of Tiny ImageNet's boxes pasted onto a blurred photo."""
    size: int = 128                     # pixels, square
    min_objects: int = 2
    max_objects: int = 4
    min_side: int = 28                  # pixels: an object's longer side after scaling, at least ...
    max_side: int = 60                  # ... and at most
    min_box: int = 12                   # pixels: skip source boxes with a shorter side than this
    background_blur: int = 8            # the background is another photo shrunk to this many pixels and grown back

    def __post_init__(self):
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if not 1 <= self.min_side <= self.max_side <= self.size:
            raise ValueError(f"need 1 <= min_side <= max_side <= size, got {self.min_side}, {self.max_side}, {self.size}")


@dataclass
class SceneSet:
    """Detection data: ``images`` uint8 (N, 3, S, S) and per image a dict of ``boxes`` (k, 4) xyxy and
    ``labels`` (k,) in 1..C (0 is torchvision's background); ``classes`` names label c at index c - 1."""
    images: Tensor
    targets: list[dict[str, Tensor]]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        n_obj = sum(len(t["labels"]) for t in self.targets)
        return f"SceneSet({len(self)} images {tuple(self.images.shape[-2:])}, {n_obj} objects, {len(self.classes)} classes)"


def object_crops(source: B.BoxSet, min_box: int = 12) -> tuple[list[Tensor], Tensor]:
    """The boxed object of each image of ``source`` as a uint8 crop, and its label; tiny boxes are skipped."""
    crops, labels = [], []
    for img, box, lab in zip(source.images, source.boxes, source.labels):
        x0, y0, x1, y1 = box.round().int().tolist()
        if min(x1 - x0, y1 - y0) >= min_box:
            crops.append(img[:, y0:y1, x0:x1])
            labels.append(int(lab))
    if not crops:
        raise ValueError(f"no box of the source images has both sides >= {min_box} px; lower SceneConfig.min_box")
    return crops, torch.tensor(labels)


def paste(canvas: Tensor, obj: Tensor, x0: int, y0: int) -> Tensor:
    """Put ``obj`` (3, h, w) into ``canvas`` (3, S, S) with its top-left corner at (x0, y0); returns its box."""
    h, w = obj.shape[-2:]
    canvas[:, y0:y0 + h, x0:x0 + w] = obj
    return torch.tensor([x0, y0, x0 + w, y0 + h], dtype=torch.float32)


def resize_uint8(img: Tensor, h: int, w: int) -> Tensor:
    out = F.interpolate(img[None].float(), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def compose_scene(crops: list[Tensor], labels: Tensor, backgrounds: Tensor, cfg: SceneConfig,
                  g: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
    """One scene: a blurred background photo and 2-4 object crops, rescaled and placed without overlap,
    so that each true box holds exactly its object."""
    s = cfg.size
    bg = backgrounds[torch.randint(len(backgrounds), (1,), generator=g).item()]
    canvas = resize_uint8(resize_uint8(bg, cfg.background_blur, cfg.background_blur), s, s)
    want = int(torch.randint(cfg.min_objects, cfg.max_objects + 1, (1,), generator=g))
    placed, labs = [], []
    for _ in range(want * 10):  # a few tries per object to find a free place
        if len(placed) == want:
            break
        i = int(torch.randint(len(crops), (1,), generator=g))
        obj = crops[i]
        side = int(torch.randint(cfg.min_side, cfg.max_side + 1, (1,), generator=g))
        scale = side / max(obj.shape[-2:])
        h, w = max(1, round(obj.shape[-2] * scale)), max(1, round(obj.shape[-1] * scale))
        x0 = int(torch.randint(0, s - w + 1, (1,), generator=g))
        y0 = int(torch.randint(0, s - h + 1, (1,), generator=g))
        box = torch.tensor([[x0, y0, x0 + w, y0 + h]], dtype=torch.float32)
        if placed and (B.box_iou(box, torch.stack(placed)) > 0).any():
            continue
        placed.append(paste(canvas, resize_uint8(obj, h, w), x0, y0))
        labs.append(int(labels[i]) + 1)  # torchvision's detectors keep 0 for the background
    return canvas, {"boxes": torch.stack(placed), "labels": torch.tensor(labs, dtype=torch.int64)}


def compose_scenes(source: B.BoxSet, n: int, cfg: SceneConfig = SceneConfig(), seed: int = 0) -> SceneSet:
    """``n`` scenes built from the boxed objects of ``source`` (use the training images for training
    scenes and the validation images for test scenes, so that no object is seen in both)."""
    if n < 1:
        raise ValueError(f"the number of scenes must be positive, got {n}")
    crops, labels = object_crops(source, cfg.min_box)
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(n):
        img, tgt = compose_scene(crops, labels, source.images, cfg, g)
        images.append(img)
        targets.append(tgt)
    return SceneSet(torch.stack(images), targets, list(source.classes))


# ----------------------------------------------------------------------------- VOC through torchvision

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")


def voc_target(annotation: dict, where: str, classes=VOC_CLASSES, keep_difficult: bool = False) -> dict[str, Tensor]:
    """A ``VOCDetection`` annotation (parsed XML) -> {boxes, labels}, with errors naming ``where`` and
    the object. VOC's 1-based inclusive pixels become continuous xyxy (x0 - 1, y0 - 1, x1, y1)."""
    ann = annotation["annotation"]
    size = ann.get("size", {})
    width, height = int(size.get("width", 0)), int(size.get("height", 0))
    objects = ann.get("object", [])
    objects = objects if isinstance(objects, list) else [objects]
    boxes, labels = [], []
    for k, obj in enumerate(objects, start=1):
        name = obj["name"].strip()
        if name not in classes:
            raise ValueError(f"{where}, object {k}: class {name!r} is not in the class list ({len(classes)} classes: "
                             f"{', '.join(classes[:4])}, ...); pass classes= with it, or fix the name")
        if obj.get("difficult", "0") == "1" and not keep_difficult:
            continue
        bb = obj["bndbox"]
        x0, y0, x1, y1 = (float(bb[c]) for c in ("xmin", "ymin", "xmax", "ymax"))
        if x1 < x0 or y1 < y0:
            raise ValueError(f"{where}, object {k}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has xmax < xmin or ymax < ymin; "
                             "swap them in the annotation")
        if x0 < 1 or y0 < 1 or (width and x1 > width) or (height and y1 > height):
            raise ValueError(f"{where}, object {k}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the "
                             f"{width}x{height} image (VOC pixels run from 1 to the size); clip it")
        boxes.append([x0 - 1, y0 - 1, x1, y1])
        labels.append(classes.index(name) + 1)
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64)}


class VOCAdapter(torch.utils.data.Dataset):
    """torchvision's ``VOCDetection`` (the standard VOCdevkit layout) giving (uint8 image (3, H, W),
    {boxes, labels}) like ``SceneSet``; a missing image or a bad annotation is an error naming its file."""

    def __init__(self, root: str | os.PathLike, year: str = "2007", image_set: str = "trainval",
                 classes=VOC_CLASSES, keep_difficult: bool = False):
        root = Path(root)
        devkit = root / "VOCdevkit" / f"VOC{year}"
        if not devkit.is_dir():
            raise FileNotFoundError(f"{devkit} is missing: put the PASCAL VOC {year} devkit under {root} "
                                    f"(root/VOCdevkit/VOC{year}/JPEGImages, Annotations, ImageSets/Main)")
        self.voc = VOCDetection(str(root), year=year, image_set=image_set, download=False)
        self.classes, self.keep_difficult = list(classes), keep_difficult

    def __len__(self) -> int:
        return len(self.voc)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor]]:
        image_path, ann_path = Path(self.voc.images[i]), Path(self.voc.annotations[i])
        if not image_path.is_file():
            raise FileNotFoundError(f"{ann_path}: names image {image_path.name}, which is not at {image_path}; "
                                    "restore it or drop the id from the ImageSets list")
        image, ann = self.voc[i]
        target = voc_target(ann, str(ann_path), self.classes, self.keep_difficult)
        img = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()
        B.check_boxes(target["boxes"], img.shape[1], img.shape[2], str(ann_path))
        return img, target


def voc_detection(root: str | os.PathLike, year: str = "2007", image_set: str = "trainval", limit: int | None = None,
                  classes=VOC_CLASSES) -> tuple[list[Tensor], list[dict[str, Tensor]], list[str]]:
    """Images, targets and class names of a VOC split (the first ``limit`` images), ready for
    ``train_detector``/``detect`` (which take lists as well as a ``SceneSet``'s tensors)."""
    ds = VOCAdapter(root, year, image_set, classes)
    n = len(ds) if limit is None else min(limit, len(ds))
    items = [ds[i] for i in range(n)]
    return [im for im, _ in items], [t for _, t in items], list(classes)
