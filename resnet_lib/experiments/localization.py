"""ImageNet localization, as in the paper's appendix ("ImageNet Localization", Tables 13 and 14), scaled
down to Tiny ImageNet.

The paper's recipe, and what this module does with it:

- A classification network, pretrained (Sec. 3.4), predicts the image's classes
  (``pretrain_classifier``, with ``resnet_lib.engine.loop.fit``).
- A second network, initialised from it, ends in a *per-class* RPN: "two sibling 1x1 convolutional layers
  for binary classification (cls) and box regression (reg)", where cls has one binary logistic output per
  class and reg one box (4 numbers) per class, "with reference to multiple translation-invariant anchor
  boxes at each position" (``PerClassRPNHead``, ``RPNLocalizer``).
- Fine-tuning samples "8 anchors ... for each image, where the sampled positive and negative anchors have a
  ratio of 1:1", on random crops (``LocConfig``, ``fine_tune``). Anchors are labelled as in the RPN
  (Ren et al.): positive at IoU >= 0.7 or the best anchor of the box, negative below 0.3; torchvision's
  ``Matcher`` and ``BalancedPositiveNegativeSampler`` do both.
- Testing applies the network on a centre crop ("1-crop") or fully convolutionally ("dense"). For each
  candidate class, the RPN would take the anchor with the highest score of that class and its class's
  regressed box; we also offer, and use by default, a score-weighted average of all anchors' boxes for
  the class (``class_boxes``), a departure that is steadier on our coarse map (both are reported).
- The error (``loc_error``): an image counts as wrong unless, among the (up to 5) guessed classes, one is
  the true class and its box has IoU >= 0.5 with the true box. With the true class as the only guess it
  is Table 13's "GT-CLS" (oracle) error.

Departures for 64x64 images on a CPU: ResNet-18 instead of ResNet-101; 32 sampled anchors per image
(our batches hold 32 images, not 256); the RPN sits on conv5_x's 2x2 map
(stride 32), where the paper's 224x224 crops give 7x7; anchor sizes are scaled to the image; one box per
image (Tiny ImageNet has one), where ILSVRC may have several of the same class.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, Matcher

from ..base.device import autocast, pick_device, use_bf16
from ..base.paper import targets
from ..data import boxes as B
from .fine_tuning import sgd_fine_tune


@dataclass(frozen=True)
class LocConfig:
    """Fine-tuning for localization; the appendix's values where it gives them, scaled to 64x64 images."""
    anchor_sizes: tuple[int, ...] = (24, 40, 64)  # pixels; RPN's 128/256/512 at ~600 px, scaled to 64 px images
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # height/width, RPN's three ratios
    anchors_per_image: int = 32         # appendix: 8 per image, 256 images per batch; our batches are 8x smaller
    positive_fraction: float = 0.5      # appendix: positives and negatives "have a ratio of 1:1"
    fg_iou: float = 0.7                 # RPN's positive threshold (Ren et al.)
    bg_iou: float = 0.3                 # RPN's negative threshold
    crop: int = 56                      # px: random crops of 56..64 px resized to 64 (Sec. 3.4: 224 of 256..480);
                                        # the 1-crop test uses the centre crop of this size
    flip: bool = True                   # horizontal flips (Sec. 3.4)
    epochs: int = 8
    batch_size: int = 32                # images per iteration; the appendix uses 256
    lr: float = 0.02                    # fine-tuning lr; step down 10x at 75% of the run
    momentum: float = 0.9
    weight_decay: float = 1e-4          # Sec. 3.4
    reg_weight: float = 1.0             # lambda balancing cls and reg, RPN's Eq. (1)
    stage: int = 5                      # the head sits on conv5_x (5, stride 32) or conv4_x (4, stride 16, as RPN)
    seed: int = 0
    precision: str = "auto"                   # bf16 autocast where fast ("auto"), "bf16" or "off"

    def __post_init__(self):
        if not self.anchor_sizes or min(self.anchor_sizes) <= 0:
            raise ValueError(f"anchor_sizes must be positive pixel sizes, got {self.anchor_sizes}")
        if not 0 < self.positive_fraction <= 1:
            raise ValueError(f"positive_fraction must be in (0, 1], got {self.positive_fraction}")
        if not 0 <= self.bg_iou <= self.fg_iou <= 1:
            raise ValueError(f"need 0 <= bg_iou <= fg_iou <= 1, got bg_iou={self.bg_iou}, fg_iou={self.fg_iou}")
        if self.stage not in (4, 5):
            raise ValueError(f"stage must be 4 (conv4_x) or 5 (conv5_x), got {self.stage}")
        if self.epochs < 0 or self.batch_size < 1 or self.anchors_per_image < 1:
            raise ValueError("epochs must be >= 0, batch_size and anchors_per_image >= 1")

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_sizes) * len(self.aspect_ratios)


# ----------------------------------------------------------------------------- anchors and the head

def make_anchors(feat_h: int, feat_w: int, image_h: int, image_w: int, sizes, ratios) -> Tensor:
    """Anchors (feat_h * feat_w * A, 4), ordered by row, column, then anchor: ``A = len(sizes) * len(ratios)``
    boxes of area size^2 and height/width ratio r, centred on each feature cell (the RPN's
    translation-invariant anchors, Ren et al. Sec. 3.1.1)."""
    sy, sx = image_h / feat_h, image_w / feat_w
    base = []
    for s in sizes:
        for r in ratios:
            w, h = s / r ** 0.5, s * r ** 0.5
            base.append([-w / 2, -h / 2, w / 2, h / 2])
    base = torch.tensor(base)  # (A, 4)
    cy = (torch.arange(feat_h) + 0.5) * sy
    cx = (torch.arange(feat_w) + 0.5) * sx
    cy, cx = torch.meshgrid(cy, cx, indexing="ij")
    centres = torch.stack([cx, cy, cx, cy], -1).reshape(-1, 1, 4)  # (H*W, 1, 4)
    return (centres + base).reshape(-1, 4)


class PerClassRPNHead(nn.Module):
    """The appendix's per-class RPN: two sibling 1x1 convs. For each of A anchors at each position,
    ``cls_logits`` gives C binary logits (object of class c or not) and ``bbox_pred`` 4C box deltas."""

    def __init__(self, in_channels: int, num_classes: int, num_anchors: int):
        super().__init__()
        self.num_classes, self.num_anchors = num_classes, num_anchors
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, kernel_size=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * num_classes * 4, kernel_size=1)
        for conv in (self.cls_logits, self.bbox_pred):  # RPN's initialisation: N(0, 0.01), zero bias
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        cls = self.cls_logits(x)
        reg = self.bbox_pred(x)
        return cls, reg


class RPNLocalizer(nn.Module):
    """A ResNet's conv1..conv5_x (``forward_features``) followed by ``PerClassRPNHead``.

    ``forward(x)`` returns ``cls`` (N, K, C) logits, ``reg`` (N, K, C, 4) deltas and ``anchors`` (K, 4),
    where K = H * W * A anchors over the feature map."""

    def __init__(self, backbone: nn.Module, num_classes: int, cfg: LocConfig = LocConfig()):
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        channels = backbone.num_features if cfg.stage == 5 else backbone.num_features // 2
        self.head = PerClassRPNHead(channels, num_classes, cfg.num_anchors)

    def features(self, x: Tensor) -> Tensor:
        if self.cfg.stage == 5:
            return self.backbone.forward_features(x)
        net = self.backbone  # conv1 .. conv4_x, as Faster R-CNN's RPN on ResNet (appendix)
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        return net.layer3(net.layer2(net.layer1(x)))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        feats = self.features(x)
        cls, reg = self.head(feats)
        n, _, fh, fw = feats.shape
        a, c = self.head.num_anchors, self.head.num_classes
        cls = cls.view(n, a, c, fh, fw).permute(0, 3, 4, 1, 2).reshape(n, fh * fw * a, c)
        reg = reg.view(n, a, c, 4, fh, fw).permute(0, 4, 5, 1, 2, 3).reshape(n, fh * fw * a, c, 4)
        anchors = make_anchors(fh, fw, x.shape[-2], x.shape[-1], self.cfg.anchor_sizes, self.cfg.aspect_ratios)
        return {"cls": cls, "reg": reg, "anchors": anchors.to(x.device)}


def localizer_from_classifier(classifier: nn.Module, num_classes: int, cfg: LocConfig = LocConfig()) -> RPNLocalizer:
    """The localization net starts from a copy of the pretrained classifier (appendix: fine-tuned from
    the classification model); the classifier itself stays as it is, to predict the classes."""
    backbone = copy.deepcopy(classifier).float().to(memory_format=torch.contiguous_format)
    return RPNLocalizer(backbone, num_classes, cfg)


# ----------------------------------------------------------------------------- labels, sampling and loss

def sample_anchors(anchors: Tensor, gt_boxes: Tensor, cfg: LocConfig) -> tuple[Tensor, Tensor]:
    """For each image's one box: boolean masks (N, K) of the sampled positive and negative anchors."""
    matcher = Matcher(cfg.fg_iou, cfg.bg_iou, allow_low_quality_matches=True)
    sampler = BalancedPositiveNegativeSampler(cfg.anchors_per_image, cfg.positive_fraction)
    labels = []
    for box in gt_boxes:
        matched = matcher(B.box_iou(box[None], anchors))  # >= 0 positive, -1 negative, -2 in between
        lab = torch.full_like(matched, -1, dtype=torch.float32)
        lab[matched >= 0] = 1.0
        lab[matched == Matcher.BELOW_LOW_THRESHOLD] = 0.0
        labels.append(lab)
    pos, neg = sampler(labels)
    return torch.stack(pos).bool(), torch.stack(neg).bool()


def loc_loss(out: dict[str, Tensor], gt_boxes: Tensor, gt_labels: Tensor, cfg: LocConfig) -> dict[str, Tensor]:
    """RPN's loss (Ren et al., Eq. 1) in per-class form: binary cross-entropy on all C logits of each
    sampled anchor (a positive's target is its class, a negative's is no class), averaged over anchors and
    classes, and smooth-L1 on the true class's 4 deltas of the positives, averaged over the sampled anchors."""
    cls, reg, anchors = out["cls"].float(), out["reg"].float(), out["anchors"]
    pos, neg = sample_anchors(anchors, gt_boxes, cfg)
    n_cls = cls.shape[-1]
    img_pos, anc_pos = pos.nonzero(as_tuple=True)
    sampled = pos | neg
    targets = torch.zeros_like(cls)
    targets[img_pos, anc_pos, gt_labels[img_pos]] = 1.0
    n_sampled = sampled.sum().clamp(min=1)
    # mean over the C classes: each class's logistic weighs 1/C, so the cls term starts near log 2 for any C
    cls_loss = F.binary_cross_entropy_with_logits(cls[sampled], targets[sampled], reduction="sum") / (n_sampled * n_cls)
    deltas = reg[img_pos, anc_pos, gt_labels[img_pos]]
    target_deltas = B.encode(gt_boxes[img_pos], anchors[anc_pos])
    reg_loss = F.smooth_l1_loss(deltas, target_deltas, beta=1 / 9, reduction="sum") / n_sampled
    return {"loss": cls_loss + cfg.reg_weight * reg_loss, "cls": cls_loss, "reg": reg_loss}


# ----------------------------------------------------------------------------- fine-tuning

def fine_tune(model: RPNLocalizer, train: B.BoxSet, cfg: LocConfig | None = None, *, mean: Tensor, std: Tensor,
              device="auto", progress: bool = True) -> dict:
    """Fine-tune ``model`` for localization on ``train`` by SGD (``fine_tuning.sgd_fine_tune``); returns the
    per-epoch mean losses."""
    cfg = cfg or model.cfg
    dev = pick_device(device)
    bf16 = use_bf16(dev, cfg.precision)
    if cfg.crop > train.images.shape[-1]:
        raise ValueError(f"crop {cfg.crop} is larger than the {train.images.shape[-1]}-pixel images; lower LocConfig.crop")
    if min(train.images.shape[-2:]) != max(train.images.shape[-2:]):
        raise ValueError("fine_tune expects square images (Tiny ImageNet's are 64x64)")
    model.to(dev, memory_format=torch.channels_last if bf16 else torch.contiguous_format).train()
    mean, std = mean.to(dev), std.to(dev)

    def batch_losses(idx: Tensor, g: torch.Generator) -> dict[str, Tensor]:
        x, boxes = B.random_crops(train.images[idx], train.boxes[idx], cfg.crop, cfg.flip, g)
        x = normalize(x.to(dev), mean, std)  # crops come back as float 0..255, as uint8 images would
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(dev, bf16):
            out = model(x)
        return loc_loss(out, boxes.to(dev), train.labels[idx].to(dev), cfg)

    return sgd_fine_tune(model, len(train), cfg, batch_losses, desc="fine-tune (loc)", progress=progress)


def normalize(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return (images.float().div(255.0) - mean) / std


# ----------------------------------------------------------------------------- testing

def class_boxes(out: dict[str, Tensor], classes: Tensor, vote: bool = True) -> Tensor:
    """One box per image and candidate class from the head's outputs: (N, K, 4) for ``classes`` (N, K).

    ``vote=False`` takes the anchor with the highest score for the class and decodes that class's
    deltas (the RPN's own ranking). ``vote=True`` (our departure) averages every anchor's decoded box for
    the class, weighted by the softmax of the class's scores over the anchors: on a 2x2 map, most
    positives are single best-match anchors, the scores rank anchors poorly, and the average is steadier."""
    cls, reg, anchors = out["cls"].float(), out["reg"].float(), out["anchors"]
    n, a, _ = cls.shape
    k = classes.shape[1]
    scores = cls.gather(2, classes[:, None, :].expand(n, a, k))  # (N, A, K)
    deltas = reg.gather(2, classes[:, None, :, None].expand(n, a, k, 4))  # (N, A, K, 4)
    boxes = B.decode(deltas.reshape(-1, 4), anchors[None, :, None].expand(n, a, k, 4).reshape(-1, 4))
    boxes = boxes.reshape(n, a, k, 4)
    if vote:
        return (scores.softmax(1)[..., None] * boxes).sum(1)
    best = scores.argmax(1)  # (N, K)
    return boxes.gather(1, best[:, None, :, None].expand(n, 1, k, 4))[:, 0]


@torch.no_grad()
def predict_boxes(model: RPNLocalizer, images: Tensor, classes: Tensor, *, mean: Tensor, std: Tensor,
                  mode: str = "1-crop", vote: bool = True, crop: int | None = None, device="auto",
                  batch_size: int = 256) -> Tensor:
    """For each image and each of its K candidate ``classes`` (N, K): a box (N, K, 4) in the image's
    coordinates, clipped to the image (see ``class_boxes`` for ``vote``).

    ``mode="1-crop"`` runs on the centre ``crop`` (default ``model.cfg.crop``) resized to the image size
    (Table 13's "1-crop"); ``"dense"`` on the whole image, fully convolutionally (Table 13's "dense", there
    also multi-scale)."""
    if mode not in ("dense", "1-crop"):
        raise ValueError(f"unknown test mode {mode!r}; use 'dense' or '1-crop' (Table 13's two settings)")
    if classes.ndim != 2 or len(classes) != len(images):
        raise ValueError(f"classes must be (N, K) candidate labels for the N={len(images)} images, "
                         f"got shape {tuple(classes.shape)}")
    dev = pick_device(device)
    bf16 = use_bf16(dev, model.cfg.precision)
    model.to(dev).eval()
    h, w = images.shape[-2:]
    out_boxes = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        if mode == "1-crop":  # the centre crop, resized to the network's input size as in training
            window = B.center_window(len(x), w, crop or model.cfg.crop)
            x = B.crop_windows(x, window, w)
        with autocast(dev, bf16):
            out = model(normalize(x.to(dev), mean.to(dev), std.to(dev)))
        boxes = class_boxes(out, classes[start:start + batch_size].to(dev), vote).float().cpu()
        if mode == "1-crop":  # back to the image's coordinates
            scale = (window[:, 2:3] - window[:, 0:1]) / w
            boxes = boxes * scale[:, None] + window[:, None, :2].repeat(1, 1, 2)
        out_boxes.append(B.clip_boxes(boxes, (h, w)))
    return torch.cat(out_boxes)


def loc_error(pred_labels: Tensor, pred_boxes: Tensor, gt_labels: Tensor, gt_boxes: Tensor,
              iou_threshold: float = 0.5) -> float:
    """ILSVRC's localization error: the fraction of images where no guess (of K, e.g. top-5) has both
    the true class and a box with IoU >= ``iou_threshold`` with the true box.

    ``pred_labels`` (N, K), ``pred_boxes`` (N, K, 4), ``gt_labels`` (N,), ``gt_boxes`` (N, 4)."""
    if pred_labels.ndim == 1:
        pred_labels, pred_boxes = pred_labels[:, None], pred_boxes[:, None]
    n, k = pred_labels.shape
    if pred_boxes.shape != (n, k, 4) or gt_labels.shape != (n,) or gt_boxes.shape != (n, 4):
        raise ValueError(f"shapes do not fit: pred_labels {tuple(pred_labels.shape)}, pred_boxes "
                         f"{tuple(pred_boxes.shape)}, gt_labels {tuple(gt_labels.shape)}, gt_boxes "
                         f"{tuple(gt_boxes.shape)}; expected (N, K), (N, K, 4), (N,), (N, 4)")
    if n == 0:
        raise ValueError("loc_error of no images is undefined; pass at least one image")
    iou = B.paired_iou(pred_boxes.reshape(-1, 4).float(), gt_boxes[:, None].expand(n, k, 4).reshape(-1, 4).float())
    hit = (pred_labels == gt_labels[:, None]) & (iou.view(n, k) >= iou_threshold)
    return 1.0 - hit.any(1).float().mean().item()


def whole_image_boxes(n: int, height: int, width: int) -> Tensor:
    """The trivial localizer: the whole image as the box, (n, 4)."""
    return torch.tensor([[0.0, 0.0, float(width), float(height)]]).expand(n, 4).clone()


def mean_box(boxes: Tensor) -> Tensor:
    """The constant localizer learned without a network: the coordinate-wise mean of the training boxes, (4,).
    A head that has learned nothing about the image converges to about this box."""
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
        raise ValueError(f"mean_box expects (N, 4) boxes with N >= 1, got {tuple(boxes.shape)}")
    return boxes.float().mean(0)


@torch.no_grad()
def class_scores(classifier: nn.Module, images: Tensor, *, mean: Tensor, std: Tensor, device="auto",
                 precision: str = "auto", batch_size: int = 256) -> Tensor:
    dev = pick_device(device)
    bf16 = use_bf16(dev, precision)
    classifier.to(dev).eval()
    outs = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size].to(dev), mean.to(dev), std.to(dev))
        with autocast(dev, bf16):
            outs.append(classifier(x).float().cpu())
    return torch.cat(outs)


def evaluate_localization(classifier: nn.Module, localizer: RPNLocalizer, val: B.BoxSet, *, mean: Tensor,
                          std: Tensor, device="auto", top_k: int = 5, train_boxes: Tensor | None = None) -> dict:
    """Table 13/14-style errors (fractions) on ``val``, two baselines without a network, and the predictions.

    ``gt_cls_*``: the oracle setting (true class given), in the 1-crop and dense settings, with the
    score-weighted box (``vote``) and with the top anchor's box (``top_anchor``); ``top5_dense``: the
    classifier's top 5 classes, each with its box (``top_k`` guesses where there are fewer than 5 classes);
    ``baseline_gt_cls``: the whole image as the box; with ``train_boxes``, ``mean_box_gt_cls`` and
    ``mean_iou_mean_box``: the mean training box (:func:`mean_box`) on every image, and
    ``mean_iou_dense_vs_mean_box``: how close the network's boxes are to that constant box."""
    h, w = val.images.shape[-2:]
    k = min(top_k, len(val.classes))
    scores = class_scores(classifier, val.images, mean=mean, std=std, device=device)
    top = scores.topk(k, 1).indices
    gt = val.labels[:, None]
    kw = dict(mean=mean, std=std, device=device)
    boxes = {"1-crop": predict_boxes(localizer, val.images, gt, mode="1-crop", **kw)[:, 0],
             "dense": predict_boxes(localizer, val.images, gt, mode="dense", **kw)[:, 0],
             "dense top anchor": predict_boxes(localizer, val.images, gt, mode="dense", vote=False, **kw)[:, 0]}
    top_boxes = predict_boxes(localizer, val.images, top, mode="dense", **kw)
    whole = whole_image_boxes(len(val), h, w)
    err = lambda b: loc_error(val.labels, b, val.labels, val.boxes)
    res = {"cls_top1_err": (top[:, 0] != val.labels).float().mean().item(),
           "cls_top5_err": 1.0 - (top == gt).any(1).float().mean().item(), "top_k": k,
           "gt_cls_1crop": err(boxes["1-crop"]), "gt_cls_dense": err(boxes["dense"]),
           "gt_cls_dense_top_anchor": err(boxes["dense top anchor"]),
           "top5_dense": loc_error(top, top_boxes, val.labels, val.boxes),
           "baseline_gt_cls": err(whole),
           "mean_iou_dense": B.paired_iou(boxes["dense"], val.boxes).mean().item(),
           "mean_iou_baseline": B.paired_iou(whole, val.boxes).mean().item(), "n": len(val)}
    if train_boxes is not None:
        const = mean_box(train_boxes)[None].expand(len(val), 4)
        res.update(mean_box=mean_box(train_boxes).tolist(), mean_box_gt_cls=err(const),
                   mean_iou_mean_box=B.paired_iou(const, val.boxes).mean().item(),
                   mean_iou_dense_vs_mean_box=B.paired_iou(boxes["dense"], const).mean().item())
    return {"errors": res, "boxes": boxes, "top": top, "top_boxes": top_boxes, "scores": scores}


# ----------------------------------------------------------------------------- beside the paper

def paper_rows(errors: dict, depth: int = 18, note: str = "") -> list[dict]:
    """Our errors (fractions, from ``evaluate_localization``) as results rows in %, beside Table 13/14's."""
    t13, t4 = targets()["loc_table13_val_err"], targets()["imagenet_table4_single_model_val_top1_top5"]
    ours = f"ResNet-{depth}, {note}" if note else f"ResNet-{depth}"
    pct = lambda v: round(100 * v, 2)
    return [
        {"quantity": "LOC error, true class given, dense (Table 13)", "ours": pct(errors["gt_cls_dense"]),
         "paper": t13["RPN R101 dense GT-CLS"], "unit": "%", "note": f"{ours}; paper: ResNet-101 RPN, ImageNet val"},
        {"quantity": "LOC error, true class given, 1-crop (Table 13)", "ours": pct(errors["gt_cls_1crop"]),
         "paper": t13["RPN R101 1-crop GT-CLS"], "unit": "%", "note": ours},
        {"quantity": "LOC error, true class given, dense, top anchor's box", "ours": pct(errors["gt_cls_dense_top_anchor"]),
         "paper": None, "unit": "%", "note": "the RPN's own ranking instead of our score-weighted box"},
        {"quantity": "LOC error, true class given, whole-image box (baseline)", "ours": pct(errors["baseline_gt_cls"]),
         "paper": None, "unit": "%", "note": "the same validation images; no network"},
    ] + ([
        {"quantity": "LOC error, true class given, mean training box (baseline)", "ours": pct(errors["mean_box_gt_cls"]),
         "paper": None, "unit": "%", "note": "one constant box, the mean of the training boxes, on every image"},
    ] if "mean_box_gt_cls" in errors else []) + [
        {"quantity": f"LOC error, top-{errors.get('top_k', 5)} predicted classes, dense (Tables 13/14)",
         "ours": pct(errors["top5_dense"]), "paper": t13["RPN R101 dense pred-CLS top5"], "unit": "%",
         "note": f"{ours}; paper: ResNet-101 RPN (Table 14's 8.9 adds RCNN and an ensemble)"},
        {"quantity": f"classification top-{errors.get('top_k', 5)} error of the pretrained net (Table 4)",
         "ours": pct(errors["cls_top5_err"]),
         "paper": t4["ResNet-101"][1], "unit": "%", "note": f"{ours}; paper: ResNet-101, 1000 classes"},
    ]

