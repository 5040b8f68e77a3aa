"""The per-class RPN localizer: anchors, head shapes, sampling, LOC error, and a short fine-tune."""
from __future__ import annotations

import pytest
import torch

from resnet_lib.data import boxes as B
from resnet_lib.experiments import fine_tuning as FT
from resnet_lib.experiments import localization as L
from resnet_lib.models.imagenet import resnet18


def test_anchors_tile_the_image():
    anchors = L.make_anchors(2, 2, 64, 64, sizes=(32,), ratios=(0.5, 1.0, 2.0))
    assert anchors.shape == (2 * 2 * 3, 4)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert sorted(set(centres[:, 0].tolist())) == [16.0, 48.0]  # one per cell, at the cell's centre
    areas = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    assert torch.allclose(areas, torch.full((12,), 32.0 ** 2))  # every ratio keeps the size's area
    h_over_w = (anchors[:3, 3] - anchors[:3, 1]) / (anchors[:3, 2] - anchors[:3, 0])
    assert torch.allclose(h_over_w, torch.tensor([0.5, 1.0, 2.0]))


@pytest.mark.parametrize("num_anchors", [1, 9])
def test_head_gives_c_and_4c_outputs_per_anchor_and_location(num_anchors):
    head = L.PerClassRPNHead(512, num_classes=7, num_anchors=num_anchors)
    cls, reg = head(torch.randn(2, 512, 3, 5))
    assert cls.shape == (2, num_anchors * 7, 3, 5)
    assert reg.shape == (2, num_anchors * 7 * 4, 3, 5)


def test_localizer_outputs_line_up_with_anchors():
    cfg = L.LocConfig(anchor_sizes=(24, 48), aspect_ratios=(1.0,))
    model = L.RPNLocalizer(resnet18(num_classes=5), 5, cfg).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        raw_cls, raw_reg = model.head(model.features(x))
    k = 2 * 2 * 2  # a 2x2 conv5_x map at 64x64, two anchors per cell
    assert out["cls"].shape == (2, k, 5) and out["reg"].shape == (2, k, 5, 4) and out["anchors"].shape == (k, 4)
    # row (h * W + w) * A + a of the flattened outputs is anchor a at cell (h, w): channel a * C + c of cls,
    # channels (a * C + c) * 4 + j of reg, and the anchor centred on that cell
    for h, w, a, c in [(0, 0, 0, 0), (0, 1, 1, 3), (1, 0, 0, 4), (1, 1, 1, 2)]:
        row = (h * 2 + w) * 2 + a
        assert torch.allclose(out["cls"][1, row, c], raw_cls[1, a * 5 + c, h, w])
        assert torch.allclose(out["reg"][1, row, c], raw_reg[1, (a * 5 + c) * 4:(a * 5 + c) * 4 + 4, h, w])
        centre = (out["anchors"][row, :2] + out["anchors"][row, 2:]) / 2
        assert centre.tolist() == [16.0 + 32 * w, 16.0 + 32 * h]


def test_sampling_takes_eight_anchors_half_positive():
    cfg = L.LocConfig(anchors_per_image=8)  # the appendix's 8 per image
    anchors = L.make_anchors(4, 4, 64, 64, cfg.anchor_sizes, cfg.aspect_ratios)
    gt = torch.tensor([[10.0, 10, 40, 40], [0, 0, 64, 64]])
    pos, neg = L.sample_anchors(anchors, gt, cfg)
    assert pos.shape == neg.shape == (2, len(anchors))
    assert not (pos & neg).any()
    assert ((pos | neg).sum(1) == 8).all()
    assert (pos.sum(1) >= 1).all() and (pos.sum(1) <= 4).all()  # at most 1:1
    iou = B.box_iou(gt, anchors)
    assert (iou[neg] < cfg.bg_iou).all()


def test_loc_error_hand_made():
    gt_boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    gt_labels = torch.tensor([1, 2, 3])
    good, bad = [0.0, 0, 10, 9], [5.0, 5, 15, 15]  # IoU 0.9 and 25/175
    labels = torch.tensor([[1, 4], [9, 2], [3, 0]])
    boxes = torch.tensor([[good, bad], [good, good], [bad, good]])
    # image 0: right class, good box; image 1: right class 2nd, good box; image 2: right class, bad box
    assert L.loc_error(labels, boxes, gt_labels, gt_boxes) == pytest.approx(1 / 3)
    assert L.loc_error(labels[:, :1], boxes[:, :1], gt_labels, gt_boxes) == pytest.approx(2 / 3)  # top-1 only
    # IoU exactly 0.5 counts as right
    half = torch.tensor([[0.0, 0, 10, 5]])
    assert L.loc_error(torch.tensor([1]), half, torch.tensor([1]), gt_boxes[:1]) == 0.0
    with pytest.raises(ValueError, match="shapes do not fit"):
        L.loc_error(labels, boxes[:, :1], gt_labels, gt_boxes)


def test_whole_image_baseline():
    gt = torch.tensor([[0.0, 0, 64, 64], [0, 0, 64, 30], [0, 0, 64, 33]])
    whole = L.whole_image_boxes(3, 64, 64)
    assert L.loc_error(torch.zeros(3, dtype=torch.long), whole, torch.zeros(3, dtype=torch.long), gt) == pytest.approx(1 / 3)


def test_random_crops_move_boxes_along():
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(16, 3, 64, 64, dtype=torch.uint8)
    boxes = torch.tensor([[20.0, 10, 40, 30]]).repeat(16, 1)
    images[:, :, 10:30, 20:40] = 255  # a white square exactly where the box is
    crops, new_boxes = B.random_crops(images, boxes, 40, True, g)
    assert crops.shape == (16, 3, 64, 64)
    for img, box in zip(crops, new_boxes):
        bright = (img[0] > 127).nonzero()  # the square after cropping, resizing and flipping
        seen = torch.tensor([bright[:, 1].min(), bright[:, 0].min(), bright[:, 1].max() + 1, bright[:, 0].max() + 1])
        assert torch.allclose(box, seen.float(), atol=1.5), (box, seen)


def test_crop_boxes_clip_to_the_window():
    windows = torch.tensor([[16.0, 16, 48, 48]])  # a 32 px window, resized to 64: scale 2
    assert B.crop_boxes(torch.tensor([[0.0, 20, 32, 40]]), windows, 64).tolist() == [[0.0, 8.0, 32.0, 48.0]]


def _toy_set(n=32, seed=0):
    """Bright squares on dark noise; the class is the square's colour channel."""
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 3, 64, 64, generator=g) * 60).to(torch.uint8)
    labels = torch.arange(n) % 3
    boxes = []
    for i in range(n):
        s = int(torch.randint(16, 48, (1,), generator=g))
        x0, y0 = (int(v) for v in torch.randint(0, 64 - s, (2,), generator=g))
        images[i, labels[i], y0:y0 + s, x0:x0 + s] = 250
        boxes.append([x0, y0, x0 + s, y0 + s])
    return B.BoxSet(images, labels, torch.tensor(boxes, dtype=torch.float32), ["r", "g", "b"], [""] * n)


def test_short_fine_tune_lowers_the_loss():
    torch.manual_seed(0)
    data = _toy_set()
    mean, std = FT.channel_stats(data.images)
    cfg = L.LocConfig(epochs=6, batch_size=16, lr=0.01, precision="fp32")
    model = L.localizer_from_classifier(resnet18(num_classes=3), 3, cfg)
    hist = L.fine_tune(model, data, cfg, mean=mean, std=std, device="cpu", progress=False)
    assert len(hist["loss"]) == 6
    assert hist["loss"][-1] < 0.7 * hist["loss"][0], hist["loss"]
    boxes = L.predict_boxes(model, data.images, data.labels[:, None], mean=mean, std=std, device="cpu")
    assert boxes.shape == (len(data), 1, 4)
    B.check_boxes(boxes[:, 0], 64, 64)  # clipped into the image


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="bg_iou <= fg_iou"):
        L.LocConfig(fg_iou=0.2, bg_iou=0.5)
    with pytest.raises(ValueError, match="'dense' or '1-crop'"):
        L.predict_boxes(L.RPNLocalizer(resnet18(num_classes=2), 2), torch.zeros(1, 3, 64, 64, dtype=torch.uint8),
                        torch.zeros(1, 1, dtype=torch.long), mean=torch.zeros(1, 3, 1, 1), std=torch.ones(1, 3, 1, 1),
                        mode="10-crop")
