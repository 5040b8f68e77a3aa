"""Section 3.4's data pipeline on images whose answer is known, the readers' checks, and the
batch sources' rank split."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from resnet_lib.base.paths import tiny_imagenet_dir
from resnet_lib.data import imagenet as D
from resnet_lib.data import imagenet_sources as S
from resnet_lib.data import images as IM
from resnet_lib.data import tiny_imagenet as TI

NO_AUG = D.AugConfig(short_side=(64, 64), crop=64, flip=False, lighting_std=0.0, test_short_side=64,
                     test_scales=(64,))


def write_png(img: torch.Tensor, path: str) -> None:
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(path, format="PNG")


def _columns(h=64, w=64) -> torch.Tensor:
    """uint8 (3, h, w) whose value is the column index: crops and flips can be read off the pixels."""
    return torch.arange(w, dtype=torch.uint8).expand(3, h, w).clone()


def _tiny_available() -> bool:
    try:
        return (tiny_imagenet_dir() / "wnids.txt").is_file()
    except FileNotFoundError:
        return False


# ------------------------------------------------------------------------------------------ config

def test_tiny_sizes_are_the_papers_divided_by_4():
    assert D.TINY_AUG.short_side == (64, 120) and D.TINY_AUG.crop == 56
    assert D.TINY_AUG.test_short_side == 64 and D.TINY_AUG.test_scales == (56, 64, 96, 120, 160)
    assert D.AugConfig().short_side == (256, 480) and D.AugConfig().crop == 224


def test_config_rejects_a_crop_larger_than_the_image():
    with pytest.raises(ValueError, match="larger than the smallest training short side"):
        D.AugConfig(short_side=(200, 300))
    with pytest.raises(ValueError, match="test_short_side"):
        D.AugConfig(test_short_side=200)


# ------------------------------------------------------------------------------------------ steps

def test_resize_short_side_keeps_aspect():
    img = torch.zeros(3, 100, 200, dtype=torch.uint8)
    assert D.resize_short_side(img, 50).shape == (3, 50, 100)
    assert D.resize_short_side(img.transpose(1, 2), 256).shape == (3, 512, 256)


def test_scale_augmentation_is_uniform_over_the_range():
    g = torch.Generator().manual_seed(0)
    side, boxes = D.sample_crop_boxes(4000, 64, 64, D.TINY_AUG, g)
    assert side.min() == 64 and side.max() == 120
    assert abs(side.float().mean().item() - 92.0) < 1.0  # mean of U{64..120}
    width = boxes[:, 2] - boxes[:, 0]
    torch.testing.assert_close(width, 56 * 64 / side.float(), rtol=0, atol=0.05)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64 + 1e-4).all()


def test_batched_crop_equals_resize_then_crop():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (6, 3, 64, 48), dtype=torch.uint8, generator=g)
    side, boxes = D.sample_crop_boxes(6, 64, 48, D.TINY_AUG, g)
    out = D.crop_resize(x.float() / 255, boxes, 56)
    for i in range(6):
        s = int(side[i])
        nh, nw = round(64 * s / 48), s
        ref = F.interpolate(x[i:i + 1].float() / 255, size=(nh, nw), mode="bilinear", align_corners=False)[0]
        left, top = round(float(boxes[i, 0]) * nw / 48), round(float(boxes[i, 1]) * nh / 64)
        torch.testing.assert_close(out[i], ref[:, top:top + 56, left:left + 56], rtol=0, atol=1e-5)


def test_identity_settings_give_the_image_minus_its_mean():
    img = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    mean = D.pixel_mean(img, 64)
    out = D.augment_batch(img, NO_AUG, mean, g=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, img.float() / 255 - mean, rtol=0, atol=1e-6)


def test_random_crop_and_flip_read_off_the_pixels():
    img = _columns()
    flips = 0
    for seed in range(200):
        out = D.random_crop_flip(img, 56, True, torch.Generator().manual_seed(seed))
        row = out[0, 0].int()
        step = row[1] - row[0]
        assert abs(int(step)) == 1 and (row.diff() == step).all()  # contiguous columns, one direction
        assert 0 <= int(row.min()) <= 8
        flips += int(step) == -1
    assert 70 < flips < 130  # p = 1/2


def test_batched_flip_mirrors_whole_images():
    img = _columns()[None].expand(64, 3, 64, 64)
    cfg = D.AugConfig(short_side=(64, 64), crop=64, flip=True, lighting_std=0.0, test_short_side=64)
    out = D.augment_batch(img, cfg, torch.zeros(3, 64, 64), g=torch.Generator().manual_seed(0))
    cols = torch.arange(64.0) / 255
    mirrored = torch.isclose(out[:, 0, 0], cols.flip(0), atol=1e-6).all(1)
    straight = torch.isclose(out[:, 0, 0], cols, atol=1e-6).all(1)
    assert (mirrored | straight).all() and 16 < mirrored.sum() < 48


def test_pca_lighting_shifts_along_the_eigenvectors():
    eigval = torch.tensor(D.IMAGENET_EIGVAL)
    eigvec = torch.tensor(D.IMAGENET_EIGVEC)
    # alpha = e1: the shift is the first principal component times its eigenvalue
    torch.testing.assert_close(D.lighting_shift(torch.tensor([1.0, 0, 0]), eigval, eigvec), 0.2175 * eigvec[:, 0])
    img = torch.rand(3, 8, 8)
    out = D.pca_lighting(img, 0.1, g=torch.Generator().manual_seed(3))
    shift = out - img
    assert torch.allclose(shift, shift[:, :1, :1].expand_as(shift), atol=1e-6)  # one colour offset for all pixels
    alpha = torch.randn(3, generator=torch.Generator().manual_seed(3)) * 0.1
    torch.testing.assert_close(shift[:, 0, 0], D.lighting_shift(alpha, eigval, eigvec))
    # strength: the component along each eigenvector has std 0.1 * eigenvalue
    a = torch.randn(20000, 3, generator=torch.Generator().manual_seed(0)) * 0.1
    coords = D.lighting_shift(a, eigval, eigvec) @ eigvec
    torch.testing.assert_close(coords.std(0), 0.1 * eigval, rtol=0.03, atol=0)
    assert torch.equal(D.pca_lighting(img, 0.0), img)


def test_pca_basis_finds_a_known_colour_direction():
    g = torch.Generator().manual_seed(0)
    grey = torch.randint(0, 256, (50, 1, 8, 8), generator=g, dtype=torch.uint8).expand(50, 3, 8, 8)
    eigval, eigvec = D.pca_basis(grey)
    assert eigval[0] > 0.05 and eigval[1:].abs().max() < 1e-6
    torch.testing.assert_close(eigvec[:, 0].abs(), torch.full((3,), 3 ** -0.5), rtol=0, atol=1e-5)


def test_pixel_mean_is_the_average_image():
    a = torch.zeros(3, 64, 64, dtype=torch.uint8)
    b = torch.full((3, 64, 64), 255, dtype=torch.uint8)
    torch.testing.assert_close(D.pixel_mean(torch.stack([a, b]), 56), torch.full((3, 56, 56), 0.5))
    ramp = _columns()[None]
    torch.testing.assert_close(D.pixel_mean(ramp, 64)[0, 0], torch.arange(64.0) / 255)


def test_crop_larger_than_the_resized_image_is_an_error():
    with pytest.raises(ValueError, match="larger than the resized image"):
        D.random_crop_flip(torch.zeros(3, 50, 80, dtype=torch.uint8), 56, True)
    cfg = D.AugConfig(short_side=(256, 480), crop=224)
    small = torch.zeros(3, 300, 400, dtype=torch.uint8)
    assert D.train_transform(small, cfg, torch.zeros(3, 224, 224)).shape == (3, 224, 224)
    assert D.eval_transform(small, cfg, torch.zeros(3, 224, 224)).shape == (3, 224, 224)


# ------------------------------------------------------------------------------------------ readers

def _folder(root: Path, classes=("cat", "dog"), n=3, sizes=((40, 60), (50, 50), (70, 45))) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            h, w = sizes[i % len(sizes)]
            write_png(torch.full((3, h, w), 40 * c + i, dtype=torch.uint8), str(root / name / f"{i}.png"))
    return root


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        IM.list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        IM.list_images(tmp_path / "empty")
    (tmp_path / "noimg" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        IM.list_images(tmp_path / "noimg")


def test_class_lists_must_match_between_train_and_val(tmp_path):
    _folder(tmp_path / "train", ("cat", "dog"))
    _folder(tmp_path / "val", ("cat", "emu"))
    with pytest.raises(ValueError, match="class lists differ.*dog.*emu"):
        IM.image_folders(tmp_path / "train", tmp_path / "val")


def test_undecodable_images_raise_or_are_counted(tmp_path):
    root = _folder(tmp_path / "train")
    (root / "cat" / "broken.png").write_bytes(b"not an image")
    samples, _ = IM.list_images(root)
    paths = [p for p, _ in samples]
    with pytest.raises(ValueError, match="broken.png.*on_bad_image='skip'"):
        IM.load_images(paths, size=32, progress=False)
    imgs, kept, skipped = IM.load_images(paths, size=32, on_bad_image="skip", progress=False)
    assert imgs.shape == (6, 3, 32, 32) and len(kept) == 6 and skipped == [str(root / "cat" / "broken.png")]
    ds = S.FolderDataset(samples, D.AugConfig().scaled(1 / 8), torch.zeros(3, 28, 28), train=True,
                         on_bad_image="skip")
    src = S.FolderSource(ds, 7, workers=0, channels_last=False)
    (x, y), = list(src.batches(0))
    assert len(x) == 6 and src.skipped == 1


@pytest.mark.skipif(not _tiny_available(), reason="Tiny ImageNet subset not found")
def test_tiny_imagenet_reader_follows_the_standard_layout():
    root = tiny_imagenet_dir()
    wnids = (root / "wnids.txt").read_text().split()
    tr = TI.load_tiny_imagenet(root, "train", classes=3, per_class=5, progress=False)
    assert tr.images.shape == (15, 3, 64, 64) and tr.images.dtype == torch.uint8
    assert tr.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5 and tr.classes == wnids[:3]
    va = TI.load_tiny_imagenet(root, "val", classes=3, per_class=4, progress=False)
    assert va.labels.bincount().tolist() == [4, 4, 4]
    ann = dict(line.split("\t")[:2] for line in (root / "val" / "val_annotations.txt").read_text().splitlines())
    first = TI.tiny_imagenet_samples(root, "val", wnids[:3])[0]
    assert wnids[:3][first[1]] == ann[first[0].name]


def test_tiny_imagenet_with_foreign_val_classes_is_an_error(tmp_path):
    root = tmp_path / "tiny"
    (root / "train" / "n1" / "images").mkdir(parents=True)
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("n1\n")
    write_png(torch.zeros(3, 64, 64, dtype=torch.uint8), str(root / "train" / "n1" / "images" / "n1_0.JPEG"))
    write_png(torch.zeros(3, 64, 64, dtype=torch.uint8), str(root / "val" / "images" / "val_0.JPEG"))
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn2\t0\t0\t10\t10\n")
    assert len(TI.load_tiny_imagenet(root, "train", progress=False)) == 1
    with pytest.raises(ValueError, match="class lists differ"):
        TI.load_tiny_imagenet(root, "val", progress=False)
    with pytest.raises(FileNotFoundError, match="wnids.txt"):
        TI.load_tiny_imagenet(tmp_path, "train", progress=False)


# ------------------------------------------------------------------------------------------ sources

@pytest.mark.parametrize("world", [2, 3])
def test_ranks_share_each_global_batch_exactly(world):
    n, b = 103, 12 if world == 2 else 9
    for epoch in (0, 1):
        one = S.rank_batches(n, b, epoch, True, 7, 0, 1, drop_last=True)
        parts = [S.rank_batches(n, b, epoch, True, 7, r, world, drop_last=True) for r in range(world)]
        assert all(len(p) == len(one) == n // b for p in parts)
        for k, batch in enumerate(one):
            assert sorted(batch) == sorted(i for p in parts for i in p[k])
    assert S.rank_batches(n, b, 0, True, 7, 0, 1, True) != S.rank_batches(n, b, 1, True, 7, 0, 1, True)
    evals = [S.rank_batches(n, b, 0, False, 0, r, world, drop_last=False) for r in range(world)]
    assert sorted(i for p in evals for batch in p for i in batch) == list(range(n))  # each image once
    with pytest.raises(ValueError, match="not divisible"):
        S.rank_batches(n, 10, 0, True, 0, 0, 3, True)


def test_two_ranks_see_the_images_one_process_sees():
    g = torch.Generator().manual_seed(0)
    data = TI.ImageSet(torch.randint(0, 256, (40, 3, 64, 64), dtype=torch.uint8, generator=g),
                      torch.arange(40) % 4, ["a", "b", "c", "d"], ["a", "b", "c", "d"])
    mean = D.pixel_mean(data.images, 56)
    src = S.TensorSource(data, 8, D.TINY_AUG, mean, seed=3, channels_last=False)
    one = list(src.batches(1))
    r0, r1 = list(src.batches(1, rank=0, world=2)), list(src.batches(1, rank=1, world=2))
    assert len(one) == len(src) == 5
    for (x, y), (x0, y0), (x1, y1) in zip(one, r0, r1):
        torch.testing.assert_close(x[0::2], x0, rtol=0, atol=0)
        torch.testing.assert_close(x[1::2], x1, rtol=0, atol=0)
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)
    resumed = list(src.batches(1, start=3))  # resuming mid-epoch regenerates the same batches
    torch.testing.assert_close(resumed[0][0], one[3][0], rtol=0, atol=0)


def test_folder_source_splits_like_the_tensor_source(tmp_path):
    root = _folder(tmp_path / "train", ("a", "b", "c"), n=4)
    samples, _ = IM.list_images(root)
    cfg = D.AugConfig().scaled(1 / 8)
    ds = S.FolderDataset(samples, cfg, torch.zeros(3, cfg.crop, cfg.crop), train=True, seed=1)
    src = S.FolderSource(ds, 4, workers=0, channels_last=False)
    one = list(src.batches(0))
    halves = [list(src.batches(0, rank=r, world=2)) for r in (0, 1)]
    assert len(one) == 3
    for k, (x, y) in enumerate(one):
        torch.testing.assert_close(x[0::2], halves[0][k][0], rtol=0, atol=0)
        torch.testing.assert_close(x[1::2], halves[1][k][0], rtol=0, atol=0)


def test_png_bytes_round_trip():
    import io
    img = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    path = io.BytesIO(IM.png_bytes(img))
    assert torch.equal(IM.read_image(path), img)
    assert IM.png_bytes(img.float() / 255) == IM.png_bytes(img)  # floats in [0, 1] give the same PNG


def test_grayscale_images_are_read_as_rgb(tmp_path):
    Image.fromarray(torch.arange(48, dtype=torch.uint8).view(6, 8).numpy(), mode="L").save(tmp_path / "g.png")
    img = IM.read_image(tmp_path / "g.png")
    assert img.shape == (3, 6, 8) and torch.equal(img[0], img[2]) and img[1, 1, 2] == 10
