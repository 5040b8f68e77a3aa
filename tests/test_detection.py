"""Faster R-CNN on resnet_lib backbones: composed scenes, the VOC adapter, the C4/C5 split, mAP."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from resnet_lib.data import boxes as B
from resnet_lib.data import detection_sets as dsets
from resnet_lib.experiments import detection as det
from resnet_lib.models.imagenet import plain18, resnet18


def _solid_objects(n=6):
    """Source 'photos' that are one solid colour inside the box and black outside it."""
    images = torch.zeros(n, 3, 64, 64, dtype=torch.uint8)
    boxes = []
    for i in range(n):
        x0, y0 = 4 + i, 8
        images[i, :, y0:y0 + 40, x0:x0 + 30] = torch.tensor([250, 40 * i, 200], dtype=torch.uint8)[:, None, None]
        boxes.append([x0, y0, x0 + 30, y0 + 40])
    return B.BoxSet(images, torch.arange(n) % 3, torch.tensor(boxes, dtype=torch.float32), ["a", "b", "c"], [""] * n)


def test_composed_scenes_boxes_hold_their_objects():
    src = _solid_objects()
    cfg = dsets.SceneConfig(size=128, min_objects=2, max_objects=4, background_blur=4)
    scenes = dsets.compose_scenes(src, 12, cfg, seed=1)
    assert scenes.images.shape == (12, 3, 128, 128) and scenes.images.dtype == torch.uint8
    for img, t in zip(scenes.images, scenes.targets):
        assert 2 <= len(t["labels"]) <= 4 and t["labels"].min() >= 1 and t["labels"].max() <= 3
        B.check_boxes(t["boxes"], 128, 128)
        if len(t["boxes"]) > 1:  # placed without overlap
            iou = B.box_iou(t["boxes"], t["boxes"])
            assert (iou - torch.eye(len(iou))).abs().max() == 0
        for box, lab in zip(t["boxes"], t["labels"]):
            x0, y0, x1, y1 = box.int().tolist()
            side = max(x1 - x0, y1 - y0)
            assert cfg.min_side <= side <= cfg.max_side
            inside = img[:, y0:y1, x0:x1].float()
            # the box is filled by its object: red 250 everywhere (bilinear resizing of a solid colour is exact)
            assert (inside[0] - 250).abs().max() <= 1
            # and tight: the row just outside, where there is one, is background (not the object's colour)
            if y1 < 128:
                assert (img[0, y1, x0:x1].float() - 250).abs().min() > 1 or img[2, y1, x0:x1].float().mean() < 150


def test_scene_config_checks():
    with pytest.raises(ValueError, match="min_objects <= max_objects"):
        dsets.SceneConfig(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="min_box"):
        dsets.object_crops(_solid_objects(), min_box=100)


def test_backbone_split_and_frozen_bn():
    net = resnet18(num_classes=3).eval()
    mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    model = det.build_faster_rcnn(net, 3, 128, mean, std, det.DetConfig())
    assert model.backbone.out_channels == 256  # conv4_x of ResNet-18
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    feats = model.backbone(torch.randn(1, 3, 128, 128))
    assert feats.shape == (1, 256, 8, 8)  # stride 16
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():  # frozen BN keeps the pretrained statistics: C4 then C5 equals the classifier's trunk
        assert torch.allclose(model.roi_heads.box_head.layer4(model.backbone(x)), net.forward_features(x), atol=1e-4)
    assert isinstance(net.bn1, torch.nn.BatchNorm2d)  # the classifier itself is untouched


def test_short_detector_fine_tune_lowers_the_loss():
    torch.manual_seed(0)
    src = _solid_objects()
    scenes = dsets.compose_scenes(src, 16, dsets.SceneConfig(size=96, min_side=24, max_side=40), seed=0)
    mean, std = torch.full((1, 3, 1, 1), 0.4), torch.full((1, 3, 1, 1), 0.3)
    cfg = det.DetConfig(epochs=6, batch_size=4, lr=0.02, precision="fp32")
    model = det.build_faster_rcnn(plain18(num_classes=3), 3, 96, mean, std, cfg)
    hist = det.train_detector(model, scenes.images, scenes.targets, cfg, device="cpu", progress=False)
    assert {"loss", "loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(hist)
    assert hist["loss"][-1] < 0.8 * hist["loss"][0], hist["loss"]
    maps, dets = det.evaluate_detector(model, scenes.images[:4], scenes.targets[:4], 3, device="cpu", precision="fp32")
    assert len(dets) == 4 and 0.0 <= maps["map"] <= maps["map_50"] <= 1.0


def test_coco_map_hand_made():
    t = [{"boxes": torch.tensor([[0.0, 0, 20, 20], [40, 40, 80, 80]]), "labels": torch.tensor([1, 2])}]
    sizes = [(100, 100)]
    perfect = [{"boxes": t[0]["boxes"].clone(), "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.8])}]
    m = det.coco_map(perfect, t, 2, sizes)
    assert m["map"] == pytest.approx(1.0) and m["map_50"] == pytest.approx(1.0)
    # class 2's box at IoU 23/40 = 0.575: right at thresholds 0.5 and 0.55, wrong from 0.6 on
    shifted = [{"boxes": torch.tensor([[0.0, 0, 20, 20], [40, 40, 80, 63]]), "labels": torch.tensor([1, 2]),
                "scores": torch.tensor([0.9, 0.8])}]
    m = det.coco_map(shifted, t, 2, sizes)
    assert m["map_50"] == pytest.approx(1.0)
    assert m["per_class_ap50"][2] == pytest.approx(1.0)
    assert m["map"] == pytest.approx((1.0 + 2 / 10) / 2, abs=0.01)  # class 2 right at 2 of 10 IoU thresholds
    wrong_class = [{"boxes": t[0]["boxes"].clone(), "labels": torch.tensor([2, 1]), "scores": torch.tensor([0.9, 0.8])}]
    assert det.coco_map(wrong_class, t, 2, sizes)["map_50"] == pytest.approx(0.0)
    assert det.coco_map([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
                        "scores": torch.zeros(0)}], t, 2, sizes)["map"] == 0.0


def _fake_voc(root, objects):
    base = root / "VOCdevkit" / "VOC2007"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / d).mkdir(parents=True)
    Image.new("RGB", (100, 80), (90, 90, 90)).save(base / "JPEGImages" / "000001.jpg")
    objs = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
                   f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in objects)
    (base / "Annotations" / "000001.xml").write_text(
        f"<annotation><filename>000001.jpg</filename><size><width>100</width><height>80</height><depth>3</depth>"
        f"</size>{objs}</annotation>")
    (base / "ImageSets" / "Main" / "train.txt").write_text("000001\n")
    return root


def test_voc_adapter_reads_torchvision_voc(tmp_path):
    root = _fake_voc(tmp_path, [("dog", 1, 1, 50, 40), ("person", 30, 20, 100, 80)])
    images, targets, classes = dsets.voc_detection(root, "2007", "train")
    assert images[0].shape == (3, 80, 100) and images[0].dtype == torch.uint8
    assert targets[0]["boxes"].tolist() == [[0.0, 0.0, 50.0, 40.0], [29.0, 19.0, 100.0, 80.0]]
    assert [classes[i - 1] for i in targets[0]["labels"].tolist()] == ["dog", "person"]


@pytest.mark.parametrize("obj, message", [
    (("unicorn", 1, 1, 10, 10), "class 'unicorn' is not in the class list"),
    (("dog", 20, 1, 10, 10), "xmax < xmin"),
    (("dog", 1, 1, 120, 10), "outside the 100x80 image"),
])
def test_voc_bad_annotations_name_file_and_object(tmp_path, obj, message):
    root = _fake_voc(tmp_path, [("cat", 1, 1, 5, 5), obj])
    with pytest.raises(ValueError, match=message) as err:
        dsets.voc_detection(root, "2007", "train")
    assert "000001.xml, object 2" in str(err.value)


def test_voc_missing_image_and_devkit(tmp_path):
    root = _fake_voc(tmp_path, [("cat", 1, 1, 5, 5)])
    (root / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="names image 000001.jpg"):
        dsets.voc_detection(root, "2007", "train")
    with pytest.raises(FileNotFoundError, match="VOC2012 is missing"):
        dsets.voc_detection(root, "2012", "train")
