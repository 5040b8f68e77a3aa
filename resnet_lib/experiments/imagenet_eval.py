"""The paper's three ways of testing an ImageNet model (Section 3.4, Tables 2-4).

- ``"center"``: one view, shorter side resized to 256, the centre 224x224 crop (the usual baseline);
- ``"10crop"``: the standard 10-crop test of AlexNet [21] (four corners and centre, each also flipped),
  used for the paper's comparison studies (Tables 2 and 3);
- ``"multiscale"``: the fully-convolutional form of VGG [41] and [13], used for the paper's best results
  (Table 4): the final fully-connected layer becomes a 1x1 convolution applied over the whole image's
  feature map, the score map is averaged over space, and scores are averaged over shorter sides
  {224, 256, 384, 480, 640} (and over horizontal flips, as [41] does; the paper does not say).

Scores are averaged as soft-max probabilities, as in [21] and [41]. Sizes come from an
:class:`~resnet_lib.data.imagenet.AugConfig` (``TINY_AUG`` divides them all by 4 for 64x64 images).
Images are uint8 tensors: one (N, 3, H, W) tensor when they share a size (Tiny ImageNet), or a sequence of
(3, H, W) tensors of any sizes (full ImageNet), taken one at a time.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from ..base.device import autocast, pick_device, use_bf16
from ..base.paper import targets
from ..data.imagenet import AugConfig, check_crop_fits, mean_for, resize_short_side
from .evidence import Verdict, binomial_se, compare

MODES = ("center", "10crop", "multiscale")


def _prep(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    x = x.float() / 255
    return x - mean_for(mean.to(x.device), x.shape)


def fcn_score_map(model, x: torch.Tensor) -> torch.Tensor:
    """Class scores at every position of the last feature map, (N, classes, h, w): ``model.fc`` applied as
    a 1x1 convolution to ``model.forward_features(x)`` ([41]'s fully-convolutional form)."""
    feats = model.forward_features(x)
    weight = model.fc.weight[:, :, None, None]
    return F.conv2d(feats, weight.to(feats.dtype), model.fc.bias.to(feats.dtype))


def center_probs(model, images: torch.Tensor, cfg: AugConfig, mean: torch.Tensor) -> torch.Tensor:
    """Soft-max of the single centre view: shorter side ``test_short_side``, centre ``crop``."""
    x = resize_short_side(images, cfg.test_short_side)
    check_crop_fits(x.shape, cfg.crop)
    x = TF.center_crop(x, [cfg.crop, cfg.crop])
    return model(_prep(x, mean)).float().softmax(1)


def ten_crop_probs(model, images: torch.Tensor, cfg: AugConfig, mean: torch.Tensor) -> torch.Tensor:
    """Mean soft-max over the 10 crops of [21]: shorter side ``test_short_side``, crops at the four corners
    and the centre and their horizontal flips (torchvision's ``ten_crop``)."""
    x = resize_short_side(images, cfg.test_short_side)
    check_crop_fits(x.shape, cfg.crop)
    crops = TF.ten_crop(x, [cfg.crop, cfg.crop])
    n = len(images)
    logits = model(_prep(torch.cat(crops), mean)).float()
    return logits.softmax(1).view(10, n, -1).mean(0)


def multiscale_probs(model, images: torch.Tensor, cfg: AugConfig, mean: torch.Tensor,
                     flip: bool = True) -> torch.Tensor:
    """Mean soft-max over shorter sides ``cfg.test_scales`` (and flips) of the spatially averaged
    fully-convolutional score map of each whole, uncropped image (Section 3.4, Table 4)."""
    total = 0.0
    views = 0
    for side in cfg.test_scales:
        x = _prep(resize_short_side(images, side), mean)
        for xv in ((x, x.flip(-1)) if flip else (x,)):
            total = total + fcn_score_map(model, xv).float().mean((2, 3)).softmax(1)
            views += 1
    return total / views


_PROBS = {"center": center_probs, "10crop": ten_crop_probs, "multiscale": multiscale_probs}


def topk_errors(probs: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k error in % for each k below the number of classes (larger k are trivially 0 and left out)."""
    out = {}
    for k in ks:
        if k >= probs.shape[1]:  # k = all classes is always right
            continue
        top = probs.topk(k, dim=1).indices
        hit = (top == labels.to(top.device)[:, None]).any(1)
        out[f"top{k}"] = 100.0 * (1 - hit.float().mean().item())
    return out


@torch.no_grad()
def predict(model, images, mode: str, cfg: AugConfig, mean: torch.Tensor, *, batch_size: int = 100,
            device: str | torch.device = "auto", precision: str | bool = "auto", progress: bool = True) -> torch.Tensor:
    """Soft-max scores (N, classes) of ``model`` in one test ``mode`` (``"center"``, ``"10crop"``,
    ``"multiscale"``). ``images``: a uint8 (N, 3, H, W) tensor, or a sequence of (3, H, W) tensors of any
    sizes (then taken one at a time)."""
    if mode not in _PROBS:
        raise ValueError(f"unknown test mode {mode!r}; use one of {', '.join(MODES)}")
    dev = pick_device(device)
    model.eval().to(dev)
    step = batch_size if isinstance(images, torch.Tensor) else 1
    out = []
    with autocast(dev, use_bf16(dev, precision)):
        for i in tqdm(range(0, len(images), step), desc=f"test {mode}", disable=not progress, leave=False):
            chunk = images[i:i + step] if step > 1 else images[i][None]
            out.append(_PROBS[mode](model, chunk.to(dev), cfg, mean).cpu())
    return torch.cat(out)


def evaluate_modes(model, images, labels: torch.Tensor, cfg: AugConfig, mean: torch.Tensor,
                   modes: Sequence[str] = MODES, **kw) -> dict[str, dict[str, float]]:
    """``{mode: {"top1": %, "top5": %}}`` for each test mode."""
    return {m: topk_errors(predict(model, images, m, cfg, mean, **kw), labels) for m in modes}


# ----------------------------------------------------------------------------- beside the paper (notebook 05)

def _paper_errors(depth: int) -> dict:
    """The paper's top-1/top-5 errors for ResNet-``depth``: 10-crop from Table 3 (Table 2 for ResNet-18, which
    Table 3 lacks), multi-scale from Table 4; and Table 3 minus Table 4 for ResNet-34 B."""
    t = targets()
    t3, t4 = t["imagenet_table3_10crop_val_top1_top5"], t["imagenet_table4_single_model_val_top1_top5"]
    key = {18: None, 34: "ResNet-34 B"}.get(depth, f"ResNet-{depth}")
    return {"10crop": t3[key] if key else (t["imagenet_table2_top1_10crop"][f"ResNet-{depth}"], None),
            "multiscale": t4[key] if key else (None, None), "src10": "Table 3" if key else "Table 2",
            "gain_34B": t3["ResNet-34 B"][0] - t4["ResNet-34 B"][0]}


def paper_rows(tests: dict, history: dict, lr_drops: list, *, depth: int, num_classes: int, iters: int) -> list[dict]:
    """Notebook 05's rows: our three test modes (``evaluate_modes``) beside Tables 2-4, the gain from 10-crop to
    multi-scale, the training curve's last validation error and the plateau rule's lr drops. Top-5 rows only
    with more than 5 classes (with 5 or fewer every top-5 error is 0)."""
    paper = _paper_errors(depth)
    what = f"Tiny ImageNet, {num_classes} classes, {iters} iterations; paper: ImageNet, ResNet-{depth}"
    pms = paper["multiscale"][0]
    rows = [
        {"quantity": "top-1 error, centre crop", "ours": round(tests["center"]["top1"], 2), "paper": None, "unit": "%",
         "note": what + " (no single-crop number in the paper)"},
        {"quantity": "top-1 error, 10-crop", "ours": round(tests["10crop"]["top1"], 2), "paper": paper["10crop"][0],
         "unit": "%", "note": what + f" ({paper['src10']})"},
        {"quantity": "top-1 error, multi-scale fully-conv", "ours": round(tests["multiscale"]["top1"], 2),
         "paper": pms, "unit": "%", "note": what + (" (Table 4)" if pms else " (Table 4 has no ResNet-18)")},
        {"quantity": "10-crop minus multi-scale top-1",
         "ours": round(tests["10crop"]["top1"] - tests["multiscale"]["top1"], 2), "paper": round(paper["gain_34B"], 2),
         "unit": "points", "note": "paper: ResNet-34 B, Table 3 minus Table 4"},
        {"quantity": "final error on the held-out training images (training curve)",
         "ours": round(100 * history["test_err"][-1], 2), "paper": None, "unit": "%",
         "note": f"the plateau monitor, not the validation images; chance is {100 * (1 - 1 / num_classes):.0f}%"},
        {"quantity": "lr drops found by the plateau rule", "ours": len(lr_drops), "paper": None, "unit": "",
         "note": "paper: 'divided by 10 when the error plateaus' (unstated rule)"},
    ]
    if num_classes > 5:
        rows += [{"quantity": f"top-5 error, {m}", "ours": round(tests[m]["top5"], 2),
                  "paper": {"10crop": paper["10crop"][1], "multiscale": paper["multiscale"][1]}.get(m),
                  "unit": "%", "note": what} for m in MODES]
    return rows


def mode_claims(tests: dict, n_val: int, num_classes: int) -> list[tuple[str, Verdict]]:
    """The paper's order of the test modes, each step decided by ``evidence.compare`` on one evaluation each:
    10 crops beat the centre crop (Table 2/3's choice), multi-scale beats 10 crops (Table 3 to Table 4). The
    interval is the binomial standard error of each top-1 error on ``n_val`` images; the same images score
    every mode, so the paired difference is, if anything, less noisy than this."""
    chance = 100 * (1 - 1 / num_classes)
    out = []
    for better, worse, what in (("10crop", "center", "10 crops beat one centre crop"),
                                ("multiscale", "10crop", "multi-scale beats 10 crops")):
        b, w = tests[better]["top1"], tests[worse]["top1"]
        out.append((what, compare(f"{better} top-1", [b], f"{worse} top-1", [w], chance=chance, digits=1,
                                  se=(binomial_se(b, n_val), binomial_se(w, n_val)))))
    return out


def tests_table(tests: dict, n_val: int) -> list[dict]:
    """Each mode's top-1 / top-5 error with its binomial standard error on ``n_val`` images."""
    rows = []
    for m in (m for m in MODES if m in tests):
        row = {"mode": m}
        for k in ("top1", "top5"):
            if k in tests[m]:  # no top-5 with 5 classes or fewer
                row[f"{k} err (%)"] = round(tests[m][k], 1)
                row[f"± SE {k}"] = round(binomial_se(tests[m][k], n_val), 1)
        rows.append(row)
    return rows


def verdict(tests: dict, lr_drops: list, *, n_val: int, epochs: float, iters: int, num_classes: int,
            images: dict | None = None) -> str:
    """What notebook 05's test modes show, in Markdown bullets: each error with its binomial standard error on
    ``n_val`` images, each step of the paper's order through ``evidence.compare`` (:func:`mode_claims`);
    ``images`` (``imagenet_train.image_roles``) says which images steered the schedule and which were reported."""
    c, t, m = (tests[k]["top1"] for k in MODES)
    se = lambda e: binomial_se(e, n_val)
    lines = [f"- After {iters} iterations ({epochs:.1f} epochs) the validation top-1 error is "
             f"**{c:.1f} ± {se(c):.1f}%** with one centre crop, **{t:.1f} ± {se(t):.1f}%** with 10 crops and "
             f"**{m:.1f} ± {se(m):.1f}%** multi-scale (± one binomial standard error on {n_val} images; chance: "
             f"{100 * (1 - 1 / num_classes):.0f}%). On ImageNet the paper gains "
             f"{_paper_errors(34)['gain_34B']:.2f} points from 10-crop (Table 3) to multi-scale (Table 4)."]
    lines += [f"- {what}: {v.text}" for what, v in mode_claims(tests, n_val, num_classes)]
    lines.append(f"- The plateau rule divided the lr {len(lr_drops)} time(s) in {iters} iterations."
                 + (f" It watched {images['schedule_images']}; the {images['trained_on']} images trained on and those "
                    f"held out are disjoint from {images['reported']}, on which every error above is reported."
                    if images else ""))
    return "\n".join(lines)


def paper_tables_4_5() -> list[dict]:
    """Tables 4 and 5 as printed (single-model multi-scale and ensemble errors), which this project does not
    reproduce, with what each would take."""
    t = targets()
    rows = [{"table": "Table 4 (single model, val, multi-scale)", "model": k, "top-1 err (%)": v[0],
             "top-5 err (%)": v[1]} for k, v in t["imagenet_table4_single_model_val_top1_top5"].items()]
    rows += [{"table": "Table 5 (ensembles, test)", "model": k, "top-1 err (%)": None, "top-5 err (%)": v}
             for k, v in t["imagenet_table5_ensemble_top5_test"].items()]
    return rows
