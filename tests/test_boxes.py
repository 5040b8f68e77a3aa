"""Tiny ImageNet box files: parsing, the errors for bad lines, and the box arithmetic."""
from __future__ import annotations

import shutil

import pytest
import torch
from PIL import Image

from resnet_lib.data import boxes as B


def make_tiny(root, wnids=("n001", "n002"), per_class=2, train_lines=None, val_lines=None):
    """A miniature Tiny ImageNet in the standard layout, with 64x64 images."""
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\tthing {w}, other\n" for w in wnids))
    for k, w in enumerate(wnids):
        img_dir = root / "train" / w / "images"
        img_dir.mkdir(parents=True)
        lines = []
        for i in range(per_class):
            Image.new("RGB", (64, 64), (40 * k, 10 * i, 0)).save(img_dir / f"{w}_{i}.JPEG")
            lines.append(f"{w}_{i}.JPEG\t{i}\t{2 * i}\t{40 + i}\t63")
        (root / "train" / w / f"{w}_boxes.txt").write_text("\n".join(train_lines or lines) + "\n")
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    for i, w in enumerate(wnids):
        Image.new("L", (64, 64), 100).save(root / "val" / "images" / f"val_{i}.JPEG")  # grayscale, as some are
        lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t31")
    (root / "val" / "val_annotations.txt").write_text("\n".join(val_lines or lines) + "\n")
    return root


def test_reads_inclusive_pixels_as_continuous_boxes(tmp_path):
    root = make_tiny(tmp_path)
    recs = B.read_train_boxes("n001", root)
    assert [r.image.name for r in recs] == ["n001_0.JPEG", "n001_1.JPEG"]
    assert recs[1].box == (1.0, 2.0, 42.0, 64.0)  # "1 2 41 63" inclusive -> far edges + 1
    val = B.read_val_annotations(root)
    assert [r.wnid for r in val] == ["n001", "n002"] and val[0].box == (0.0, 0.0, 64.0, 32.0)
    assert B.read_words(root)["n002"] == "thing n002"


def test_load_box_sets_gives_rgb_tensors(tmp_path):
    root = make_tiny(tmp_path)
    train, val = B.load_box_sets(2, root=root)
    assert train.images.shape == (4, 3, 64, 64) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [0, 0, 1, 1]
    assert val.images.shape == (2, 3, 64, 64)  # the grayscale JPEG became RGB
    assert torch.equal(val.boxes[1], torch.tensor([0.0, 0.0, 64.0, 32.0]))


@pytest.mark.parametrize("line, message", [
    ("n001_0.JPEG\t10\t5\t3\t20", "x1 < x0"),
    ("n001_0.JPEG\t0\t0\t64\t20", "outside the 64x64 image"),
    ("n001_0.JPEG\t-1\t0\t10\t20", "outside"),
    ("n001_0.JPEG\t0\t0\tten\t20", "not four integers"),
    ("n001_0.JPEG\t0\t0\t10", "5 fields"),
    ("n001_9.JPEG\t0\t0\t10\t20", "names image n001_9.JPEG"),
])
def test_bad_train_lines_name_file_and_line(tmp_path, line, message):
    good = "n001_1.JPEG\t0\t0\t10\t20"
    root = make_tiny(tmp_path, train_lines=[good, line])
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        B.read_train_boxes("n001", root)
    assert message in str(err.value)
    assert "n001_boxes.txt:2" in str(err.value)  # the file and the line


def test_val_class_not_in_list_names_line(tmp_path):
    root = make_tiny(tmp_path, val_lines=["val_0.JPEG\tn001\t0\t0\t10\t10", "val_1.JPEG\tn999\t0\t0\t10\t10"])
    with pytest.raises(ValueError, match=r"val_annotations.txt:2: class n999 is not in the class list"):
        B.read_val_annotations(root)


def test_missing_box_file_says_what_to_do(tmp_path):
    root = make_tiny(tmp_path)
    shutil.rmtree(root / "train" / "n002")
    with pytest.raises(FileNotFoundError, match="n002_boxes.txt is missing"):
        B.load_box_sets(2, root=root)


def test_box_coding_round_trip():
    g = torch.Generator().manual_seed(0)
    anchors = torch.rand(50, 2, generator=g) * 40
    anchors = torch.cat([anchors, anchors + 5 + torch.rand(50, 2, generator=g) * 30], 1)
    boxes = torch.rand(50, 2, generator=g) * 40
    boxes = torch.cat([boxes, boxes + 1 + torch.rand(50, 2, generator=g) * 30], 1)
    deltas = B.encode(boxes, anchors)
    assert torch.allclose(B.decode(deltas, anchors), boxes, atol=1e-4)
    assert torch.allclose(B.encode(anchors, anchors), torch.zeros(50, 4), atol=1e-6)  # an anchor is its own target


def test_iou_hand_made():
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 4, 4]])
    b = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 2, 2]])
    assert torch.allclose(B.paired_iou(a, b), torch.tensor([1.0, 50 / 150, 0.0, 4 / 16]))
    assert torch.allclose(B.box_iou(a, b).diagonal(), B.paired_iou(a, b))


def test_check_boxes_rejects_bad_boxes():
    with pytest.raises(ValueError, match="x1 < x0"):
        B.check_boxes(torch.tensor([[10.0, 0, 5, 5]]), 64, 64, "mine")
    with pytest.raises(ValueError, match="outside the 64x32 image"):
        B.check_boxes(torch.tensor([[0.0, 0, 70, 5]]), 32, 64)
    ok = torch.tensor([[0.0, 0, 64, 32]])
    assert B.check_boxes(ok, 32, 64) is ok
