"""The three test modes (centre crop, 10 crops, fully-convolutional multi-scale) on images and models
whose answer is known."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from resnet_lib.data.imagenet import AugConfig
from resnet_lib.experiments import imagenet_eval as E
from resnet_lib.models.imagenet import imagenet_resnet

# 8x8 images: centre and corner crops of 4x4, multi-scale sides 4 and 8
SMALL = AugConfig(short_side=(8, 8), crop=4, test_short_side=8, test_scales=(4, 8))


class ColourNet(nn.Module):
    """Features are the pixels themselves; fc reads R, G, B as the scores of classes 0, 1, 2. So the
    network's logits are the mean colour of its input, times ``gain``."""

    def __init__(self, gain: float = 10.0):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(3) * gain)
            self.fc.bias.zero_()

    def forward_features(self, x):
        return x

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


def _red_centre_green_border() -> torch.Tensor:
    img = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    img[:, 1] = 255
    img[:, :, 2:6, 2:6] = 0
    img[:, 0, 2:6, 2:6] = 255
    return img


def test_center_crop_sees_only_the_centre():
    probs = E.center_probs(ColourNet(), _red_centre_green_border(), SMALL, torch.zeros(3, 4, 4))
    assert probs.argmax(1).item() == 0  # all red
    torch.testing.assert_close(probs, torch.softmax(torch.tensor([[10.0, 0, 0]]), 1))


def test_ten_crops_are_the_corners_centre_and_flips():
    img = _red_centre_green_border()
    net = ColourNet()
    x = img.float() / 255
    crops = [x[..., :4, :4], x[..., :4, 4:], x[..., 4:, :4], x[..., 4:, 4:], x[..., 2:6, 2:6]]
    crops += [c.flip(-1) for c in crops]
    expected = torch.stack([net(c).softmax(1) for c in crops]).mean(0)
    got = E.ten_crop_probs(net, img, SMALL, torch.zeros(3, 4, 4))
    torch.testing.assert_close(got, expected)
    # each corner crop holds 4 red and 12 green pixels, so 10-crop votes green where the centre says red
    assert got.argmax(1).item() == 1


def test_score_map_is_fc_as_a_1x1_convolution():
    torch.manual_seed(0)
    net = imagenet_resnet(18, num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        smap = E.fcn_score_map(net, x)
        assert smap.shape == (2, 5, 2, 2)
        feats = net.forward_features(x)
        torch.testing.assert_close(smap[:, :, 1, 0], net.fc(feats[:, :, 1, 0]))
        # averaging the score map is the network's own output: pooling and fc are both linear
        torch.testing.assert_close(smap.mean((2, 3)), net(x), rtol=1e-4, atol=1e-5)
        assert E.fcn_score_map(net, torch.randn(1, 3, 160, 200)).shape == (1, 5, 5, 7)


def test_multiscale_on_a_flat_image_equals_one_view():
    img = torch.zeros(2, 3, 8, 12, dtype=torch.uint8)
    img[0, 2] = 200  # blue image
    img[1, 1] = 90   # green image
    net = ColourNet()
    multi = E.multiscale_probs(net, img, SMALL, torch.zeros(3, 4, 4))
    one = E.center_probs(net, img, SMALL, torch.zeros(3, 4, 4))
    torch.testing.assert_close(multi, one)
    assert multi.argmax(1).tolist() == [2, 1]


def test_multiscale_averages_whole_image_scores_over_scales():
    img = _red_centre_green_border()
    net = ColourNet()
    x8 = img.float() / 255
    x4 = torch.nn.functional.interpolate(x8, size=(4, 4), mode="bilinear", align_corners=False, antialias=True)
    expected = (net(x8).softmax(1) + net(x4).softmax(1)) / 2  # flips change no mean colour
    # atol: the library resizes the uint8 image, which rounds to whole grey levels (1/255 per pixel)
    torch.testing.assert_close(E.multiscale_probs(net, img, SMALL, torch.zeros(3, 4, 4)), expected,
                               rtol=0, atol=1e-3)
    # the whole image is 3/4 green: multi-scale votes green, like the 10 crops, unlike the centre crop
    assert expected.argmax(1).item() == 1


def test_topk_errors():
    probs = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.4, 0.35, 0.25]])
    labels = torch.tensor([2, 1, 0, 2])
    out = E.topk_errors(probs, labels, ks=(1, 2, 5))
    assert out == pytest.approx({"top1": 75.0, "top2": 50.0})  # top5 left out: only 3 classes


def test_predict_batches_and_single_images_agree():
    torch.manual_seed(0)
    net = imagenet_resnet(18, num_classes=4)
    imgs = torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8)
    cfg = AugConfig().scaled(1 / 4)
    mean = torch.full((3, 56, 56), 0.5)
    for mode in E.MODES:
        batched = E.predict(net, imgs, mode, cfg, mean, batch_size=4, device="cpu", precision="fp32", progress=False)
        single = E.predict(net, list(imgs), mode, cfg, mean, device="cpu", precision="fp32", progress=False)
        torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batched.sum(1), torch.ones(6))
    ranked = E.evaluate_modes(net, imgs, torch.zeros(6, dtype=torch.long), cfg, mean, device="cpu", precision="fp32",
                              progress=False)
    assert set(ranked) == set(E.MODES) and set(ranked["center"]) == {"top1"}


def test_bad_mode_and_impossible_sizes_are_errors():
    with pytest.raises(ValueError, match="unknown test mode"):
        E.predict(ColourNet(), torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "5crop", SMALL, torch.zeros(3, 4, 4))
    # a test crop larger than the resized image is refused when the sizes are configured, before any run
    with pytest.raises(ValueError, match="raise test_short_side"):
        AugConfig(short_side=(8, 8), crop=8, test_short_side=6)
    # any image, however small or oblong, is first resized so that the crop fits
    cfg = AugConfig(short_side=(8, 8), crop=8, test_short_side=8)
    tiny = torch.zeros(1, 3, 3, 20, dtype=torch.uint8)
    for mode in E.MODES:
        assert E.predict(ColourNet(), tiny, mode, cfg, torch.zeros(3, 8, 8), device="cpu", progress=False).shape == (1, 3)
