"""Object detection with Faster R-CNN on a ResNet (or plain) backbone: the paper's Sec. 4.3 / appendix A
("Object Detection Baselines", Tables 7, 8 and 12), scaled down to minutes on a CPU.

What follows the paper:

- Faster R-CNN (torchvision's ``FasterRCNN``: RPN, RoI feature extraction, box head) on a network pretrained here
  for classification and then fine-tuned.
- The ResNet split of the appendix: "we compute the full-image shared conv feature maps using those
  layers whose strides on the image are no greater than 16 pixels (i.e., conv1, conv2_x, conv3_x, and
  conv4_x)"; RoI features from conv4_x (the paper: RoI pooling; here torchvision's RoIAlign, see Departures);
  "conv5_x and up are adopted for each region", ending in the
  classifier and box regressor (``ResNetC4``, ``ResNetC5Head``).
- "BN layers are fixed during fine-tuning": every BatchNorm becomes torchvision's ``FrozenBatchNorm2d``
  with the statistics from pretraining.
- The comparison of Table 7/8, a residual against a non-residual backbone on the same data, here
  ResNet-18 against plain-18 (the paper: ResNet-101 against VGG-16).
- mAP at IoU 0.5 and mAP over IoU [0.5:0.05:0.95] from pycocotools' ``COCOeval`` (COCO's official code).

Departures: scenes composed from Tiny ImageNet's boxed objects stand in for VOC/COCO when no detection set
is at hand (``data.detection_sets.compose_scenes``); VOC itself is read through torchvision's
``VOCDetection`` (``data.detection_sets.voc_detection``). RoIAlign (``MultiScaleRoIAlign``, bilinear
sampling) replaces the paper's RoI max pooling (quantised bins); RoIs are pooled to ``roi_size`` (default 4,
so conv5_x gives 2x2; the paper's implementation pools 14x14 and conv5_x gives 7x7) and fewer RoIs and
anchors are sampled per image.
"""
from __future__ import annotations

import contextlib
import copy
import io as _io
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.rpn import AnchorGenerator
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign

from ..base.device import autocast, pick_device, use_bf16
from ..base.paper import targets
from ..data import boxes as B
from .evidence import CONTRADICTED, NOT_SHOWN, SHOWN, Verdict, compare
from .fine_tuning import sgd_fine_tune

# ----------------------------------------------------------------------------- the detector

def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d -> FrozenBatchNorm2d with the same statistics (appendix: "the BN layers are
    fixed during fine-tuning for object detection")."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for k in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, k).copy_(getattr(child, k).detach())
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


class ResNetC4(nn.Module):
    """conv1 .. conv4_x of an ``models.imagenet`` network: the shared feature map, stride 16 (appendix)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        self.out_channels = net.num_features // 2  # conv4_x has half of conv5_x's channels

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return x


class ResNetC5Head(nn.Module):
    """conv5_x and global average pooling, applied to each pooled RoI (appendix: "conv5_x and up are
    adopted for each region"); the classifier and box regressor follow in torchvision's predictor."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.layer4, self.avgpool = net.layer4, net.avgpool
        self.out_channels = net.num_features

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return x


@dataclass(frozen=True)
class DetConfig:
    """Faster R-CNN settings, Ren et al.'s where they fit, shrunk for 128x128 scenes on a CPU."""
    anchor_sizes: tuple[int, ...] = (24, 40, 64)  # pixels; Faster R-CNN's 128/256/512 on ~600 px images
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    roi_size: int = 4                   # RoIAlign output; conv5_x halves it (the paper's implementation: 14 -> 7)
    rpn_batch_size: int = 128           # anchors sampled per image for the RPN (Faster R-CNN: 256)
    rois_per_image: int = 32            # RoIs sampled per image for the head (Faster R-CNN: 128)
    proposals_train: int = 200          # RPN proposals kept after NMS (Faster R-CNN: 2000 train / 300 test)
    proposals_test: int = 50
    epochs: int = 8
    batch_size: int = 4                 # images per iteration (Faster R-CNN: 2)
    lr: float = 0.04                    # step down 10x at 75% of the run (Faster R-CNN: 0.001 per 1-2 images)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    freeze_bn: bool = True              # appendix: BN fixed during fine-tuning
    freeze_stem: bool = True            # conv1 and conv2_x fixed, as Faster R-CNN fine-tunes "conv3_1 and up"
    seed: int = 0
    precision: str = "auto"


def build_faster_rcnn(classifier: nn.Module, num_classes: int, image_size: int, mean: Tensor, std: Tensor,
                      cfg: DetConfig = DetConfig()) -> FasterRCNN:
    """Faster R-CNN on a pretrained ``models.imagenet`` classifier (its fc is dropped): conv1..conv4_x
    shared, conv5_x per RoI. ``num_classes`` object classes (the background is added); images are not
    resized (min_size = max_size = ``image_size``) and are normalised with the pretraining's ``mean``/``std``."""
    net = copy.deepcopy(classifier).float().to(memory_format=torch.contiguous_format)
    if cfg.freeze_bn:
        freeze_batchnorm(net)
    if cfg.freeze_stem:  # the first layers are generic edges and blobs; fixing them saves a third of the backward
        for module in (net.conv1, net.bn1, net.layer1):
            module.requires_grad_(False)
    backbone, head = ResNetC4(net), ResNetC5Head(net)
    anchors = AnchorGenerator(sizes=(tuple(cfg.anchor_sizes),), aspect_ratios=(tuple(cfg.aspect_ratios),))
    return FasterRCNN(
        backbone, num_classes=None, min_size=image_size, max_size=image_size,
        image_mean=mean.flatten().tolist(), image_std=std.flatten().tolist(),
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=cfg.proposals_train,
        rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=cfg.proposals_test,
        rpn_batch_size_per_image=cfg.rpn_batch_size,
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=cfg.roi_size, sampling_ratio=2),
        box_head=head, box_predictor=FastRCNNPredictor(head.out_channels, num_classes + 1),
        box_batch_size_per_image=cfg.rois_per_image)


def _as_float(img: Tensor) -> Tensor:
    return img.float().div(255.0) if img.dtype == torch.uint8 else img


def train_detector(model: FasterRCNN, images, targets: list[dict[str, Tensor]], cfg: DetConfig = DetConfig(), *,
                   device="auto", progress: bool = True, desc: str = "fine-tune (det)") -> dict:
    """Fine-tune ``model`` end to end (RPN and Fast R-CNN losses summed, as in Faster R-CNN's approximate
    joint training) by SGD (``fine_tuning.sgd_fine_tune``); returns per-epoch mean losses."""
    dev = pick_device(device)
    bf16 = use_bf16(dev, cfg.precision)
    for i, t in enumerate(targets):
        h, w = images[i].shape[-2:]
        B.check_boxes(t["boxes"], h, w, f"targets[{i}]")
    # channels-last weights make the convs run channels-last, which is what makes bf16 fast on CPUs
    model.to(dev, memory_format=torch.channels_last if bf16 else torch.contiguous_format).train()

    def batch_losses(idx: Tensor, g: torch.Generator) -> dict[str, Tensor]:
        x = [_as_float(images[i]).to(dev) for i in idx.tolist()]
        y = [{k: v.to(dev) for k, v in targets[i].items()} for i in idx.tolist()]
        with autocast(dev, bf16):
            losses = model(x, y)
        return {"loss": sum(v.float() for v in losses.values()), **losses}

    return sgd_fine_tune(model, len(targets), cfg, batch_losses, desc=desc, progress=progress)


@torch.no_grad()
def detect(model: FasterRCNN, images, *, device="auto", precision: str = "auto", batch_size: int = 16) -> list[dict[str, Tensor]]:
    """Detections per image: {boxes, labels, scores} on the CPU."""
    dev = pick_device(device)
    bf16 = use_bf16(dev, precision)
    model.to(dev).eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = [_as_float(im).to(dev) for im in images[start:start + batch_size]]
        with autocast(dev, bf16):
            dets = model(x)
        out += [{k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in d.items()} for d in dets]
    return out


# ----------------------------------------------------------------------------- mAP (pycocotools)

def _coco_gt(targets: list[dict[str, Tensor]], num_classes: int, sizes: list[tuple[int, int]]):
    from pycocotools.coco import COCO
    images, anns = [], []
    for i, (t, (h, w)) in enumerate(zip(targets, sizes)):
        images.append({"id": i, "height": h, "width": w})
        for box, lab in zip(t["boxes"].tolist(), t["labels"].tolist()):
            x0, y0, x1, y1 = box
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": lab, "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c} for c in range(1, num_classes + 1)]}
    with contextlib.redirect_stdout(_io.StringIO()):
        gt.createIndex()
    return gt


def coco_map(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], num_classes: int,
             sizes: list[tuple[int, int]]) -> dict:
    """COCO's mAP (pycocotools' ``COCOeval``): ``map_50`` (IoU 0.5; VOC's and Table 7's measure, with COCO's
    101-point interpolation rather than VOC07's 11 points), ``map`` (IoU 0.5:0.05:0.95, Table 8's
    "mAP@[.5, .95]") and ``per_class_ap50`` (label -> AP at IoU 0.5, None for a class absent from the targets)."""
    from pycocotools.cocoeval import COCOeval
    if len(detections) != len(targets):
        raise ValueError(f"{len(detections)} detection lists for {len(targets)} images; give one per image")
    gt = _coco_gt(targets, num_classes, sizes)
    dets = [{"image_id": i, "category_id": int(lab), "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(s)}
            for i, d in enumerate(detections)
            for (x0, y0, x1, y1), lab, s in zip(d["boxes"].tolist(), d["labels"].tolist(), d["scores"].tolist())]
    if not dets:
        return {"map": 0.0, "map_50": 0.0, "per_class_ap50": {c: 0.0 for c in range(1, num_classes + 1)}}
    with contextlib.redirect_stdout(_io.StringIO()):
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"][0, :, :, 0, -1]  # IoU 0.5, all recalls, classes, all areas, 100 dets
    per_class = {}
    for k, c in enumerate(ev.params.catIds):
        p = prec[:, k]
        per_class[int(c)] = float(p[p > -1].mean()) if (p > -1).any() else None
    return {"map": float(ev.stats[0]), "map_50": float(ev.stats[1]), "per_class_ap50": per_class}


def evaluate_detector(model: FasterRCNN, images, targets: list[dict[str, Tensor]], num_classes: int, *,
                      device="auto", precision: str = "auto") -> tuple[dict, list[dict[str, Tensor]]]:
    """(mAPs, detections) of ``model`` on ``images``."""
    dets = detect(model, images, device=device, precision=precision)
    sizes = [tuple(im.shape[-2:]) for im in images]
    return coco_map(dets, targets, num_classes, sizes), dets


# ----------------------------------------------------------------------------- beside the paper

def paper_rows(maps: dict[str, dict], note: str = "") -> list[dict]:
    """Results rows, in %, for ``maps`` = {"ResNet-18": coco_map(...), "plain-18": ...}: each backbone's
    mAPs beside Table 8's (COCO val: ResNet-101 against VGG-16), then the residual net's gain."""
    t8, t7 = targets()["det_table8_coco_val"], targets()["det_table7_voc_mAP"]["VOC07 test (07+12)"]
    rows = []
    for name, m in maps.items():
        paper_net = "ResNet-101" if name.lower().startswith("resnet") else "VGG-16"
        for key, metric, paper_key in (("map_50", "mAP@0.5", "mAP@.5"), ("map", "mAP@[.5,.95]", "mAP@[.5,.95]")):
            rows.append({"quantity": f"{metric}, {name} backbone (Table 8: {paper_net})", "ours": round(100 * m[key], 2),
                         "paper": t8[paper_key][paper_net], "unit": "%",
                         "note": f"{note}; paper: {paper_net} on COCO val" if note else f"paper: {paper_net} on COCO val"})
    res = [n for n in maps if n.lower().startswith("resnet")]
    plain = [n for n in maps if not n.lower().startswith("resnet")]
    if res and plain:
        for key, metric, paper_key in (("map_50", "mAP@0.5", "mAP@.5"), ("map", "mAP@[.5,.95]", "mAP@[.5,.95]")):
            gain = 100 * (maps[res[0]][key] - maps[plain[0]][key])
            rows.append({"quantity": f"{metric} gain, {res[0]} over {plain[0]}", "ours": round(gain, 2),
                         "paper": round(t8[paper_key]["ResNet-101"] - t8[paper_key]["VGG-16"], 1), "unit": "points",
                         "note": "paper: ResNet-101 over VGG-16 (Table 8)"
                                 + ("; Table 7's VOC 2007 mAP@0.5 gain is "
                                    f"{t7['ResNet-101'] - t7['VGG-16']:.1f}" if key == "map_50" else "")})
    return rows


def short_label(name: str, width: int = 12) -> str:
    """A class name that fits a box label: the name itself when short, else its last word (the head noun:
    "European fire salamander" -> "salamander"), cut to ``width`` only if that is still too long."""
    name = name.split(",")[0].strip()
    return name if len(name) <= width else name.split()[-1][:width]


def box_layers(detection: dict[str, Tensor], target: dict[str, Tensor], classes: list[str], thresh: float = 0.3) -> list:
    """``data.boxes.draw_boxes`` layers for one image: the true boxes in lime, the detections scoring at least
    ``thresh`` in red with their class name and score."""
    keep = detection["scores"] >= thresh
    labels = [f"{short_label(classes[int(c) - 1])} {s:.2f}"
              for c, s in zip(detection["labels"][keep], detection["scores"][keep])]
    return [(target["boxes"], "lime", None), (detection["boxes"][keep], "red", labels)]


def show_threshold(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> float:
    """A score threshold that shows a model's best boxes on these images: the score of its k-th best detection,
    k the number of true objects in them (all of its detections when it has fewer). A weak model's scores are
    low everywhere; one threshold for all models would show nothing of it."""
    scores = torch.cat([d["scores"].float() for d in detections]) if detections else torch.zeros(0)
    if len(scores) == 0:
        return 1.0
    k = min(sum(len(t["labels"]) for t in targets), len(scores))
    return float(scores.sort(descending=True).values[max(k, 1) - 1])


def bootstrap_map_se(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], num_classes: int,
                     sizes: list[tuple[int, int]], n_boot: int = 20, seed: int = 0) -> dict[str, float]:
    """Standard errors (points) of ``map_50`` and ``map`` from resampling the test images with replacement
    (``n_boot`` resamples, each scored by :func:`coco_map`): how much the mAP of one run moves with the
    choice of test images. It says nothing of the spread over training seeds."""
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2 resamples, got {n_boot}")
    g = torch.Generator().manual_seed(seed)
    n, draws = len(targets), {"map_50": [], "map": []}
    for _ in range(n_boot):
        idx = torch.randint(0, n, (n,), generator=g).tolist()
        m = coco_map([detections[i] for i in idx], [targets[i] for i in idx], num_classes, [sizes[i] for i in idx])
        for k in draws:
            draws[k].append(100 * m[k])
    return {k: float(torch.tensor(v).std()) for k, v in draws.items()}


def gap_verdicts(maps: dict[str, dict], ses: dict[str, dict], residual: str, plain: str) -> dict[str, Verdict]:
    """The paper's claim at this run's scale, by ``evidence.compare``: the residual backbone's detector has the
    higher mAP. Errors are passed as 100 - mAP so that lower is better; the interval is the test images'
    bootstrap alone (one training run per backbone)."""
    out = {}
    for key, metric in (("map_50", "mAP@0.5"), ("map", "mAP@[.5,.95]")):
        r, p = 100 * maps[residual][key], 100 * maps[plain][key]
        v = compare(residual, [100 - r], plain, [100 - p], se=(ses[residual][key], ses[plain][key]))
        said = (f"{residual} {r:.1f} against {plain} {p:.1f} {metric}: gap {v.gap:+.1f} points, interval "
                f"±{v.interval:.1f} (twice the bootstrap standard error over the test scenes, one run each)")
        text = {SHOWN: f"Shown on these test scenes (one training seed): {said}.",
                CONTRADICTED: f"Contradicted on these test scenes (one training seed): {plain} scores higher; {said}.",
                NOT_SHOWN: f"Not shown by this run: the gap is inside its interval; {said}."}[v.status]
        out[metric] = Verdict(v.status, text, v.gap, v.interval)
    return out


def paper_table() -> list[dict]:
    """Tables 7, 8 and 12 as printed, one row per benchmark: the baseline net, its mAP, ResNet-101's, and what
    reproducing the row would take. None of these numbers is measured by this project."""
    t = targets()
    t7, t8, t12 = t["det_table7_voc_mAP"], t["det_table8_coco_val"], t["det_table12_imagenet_DET_mAP"]
    voc = "VOC 07+12 trainval (16.5k images), ImageNet-pretrained ResNet-101 and VGG-16, 600 px images"
    rows = [("Table 7", "VOC 2007 test, mAP@.5", "VGG-16", t7["VOC07 test (07+12)"]["VGG-16"],
             t7["VOC07 test (07+12)"]["ResNet-101"], voc),
            ("Table 7", "VOC 2012 test, mAP@.5", "VGG-16", t7["VOC12 test (07++12)"]["VGG-16"],
             t7["VOC12 test (07++12)"]["ResNet-101"], voc + ", VOC 2012's evaluation server"),
            ("Table 8", "COCO val, mAP@.5", "VGG-16", t8["mAP@.5"]["VGG-16"], t8["mAP@.5"]["ResNet-101"],
             "COCO train (80k images), ImageNet-pretrained ResNet-101 and VGG-16"),
            ("Table 8", "COCO val, mAP@[.5,.95]", "VGG-16", t8["mAP@[.5,.95]"]["VGG-16"],
             t8["mAP@[.5,.95]"]["ResNet-101"], "as above"),
            ("Table 12", "ImageNet DET val2, mAP", None, None, t12["single R101 val2"],
             "ImageNet DET (200 classes), ResNet-101 fine-tuned from its ImageNet classifier; no baseline on val2"),
            ("Table 12", "ImageNet DET test, mAP", "GoogLeNet (ILSVRC 2014 winner)", t12["GoogLeNet ILSVRC14 test"],
             t12["single R101 test"], "as above, scored by the ILSVRC test server; the baseline is another "
                                      "team's system, not the same detector")]
    return [{"table": tab, "benchmark": bench, "baseline net": base, "baseline mAP": b, "ResNet-101 mAP": r,
             "gain (points)": None if b is None else round(r - b, 1), "what reproducing it takes": need}
            for tab, bench, base, b, r, need in rows]


def verdict_markdown(maps: dict[str, dict], ses: dict[str, dict], residual: str, plain: str, *, n_images: int,
                     seed: int) -> tuple[str, dict[str, Verdict]]:
    """Notebook 07's reading of the gap, one bullet per metric, every number from ``maps`` and ``ses``
    (:func:`bootstrap_map_se`), each with its :func:`gap_verdicts` verdict; returns (Markdown, verdicts)."""
    verdicts, t8 = gap_verdicts(maps, ses, residual, plain), targets()["det_table8_coco_val"]
    lines = []
    for metric, key, pk in (("mAP@0.5", "map_50", "mAP@.5"), ("mAP@[.5,.95]", "map", "mAP@[.5,.95]")):
        r, p = 100 * maps[residual][key], 100 * maps[plain][key]
        lines.append(f"- {metric}: **{residual} {r:.1f} ± {ses[residual][key]:.1f}**, **{plain} {p:.1f} ± "
                     f"{ses[plain][key]:.1f}** ({r - p:+.1f} points; ± one bootstrap standard error over the "
                     f"{n_images} test images; the paper, ResNet-101 over VGG-16 on COCO: "
                     f"{t8[pk]['ResNet-101'] - t8[pk]['VGG-16']:+.1f}).\n  Verdict: {verdicts[metric].text}")
    lines.append(f"- The interval covers only the choice of test scenes: each backbone was trained once (seed {seed}); "
                 "the spread over training seeds (exercise 1) would add to it.")
    return "\n".join(lines), verdicts
