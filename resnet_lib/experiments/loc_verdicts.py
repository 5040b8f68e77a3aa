"""Notebook 06's verdicts: does the localization head beat the boxes that need no network?

The baselines are the whole image and one constant box, the mean of the training boxes
(``localization.mean_box``); a head that learned nothing about the image lands on about the latter. Each
comparison goes through ``evidence.compare`` with the binomial standard errors of the two errors.
"""
from __future__ import annotations

from .evidence import CONTRADICTED, NOT_SHOWN, SHOWN, Verdict, binomial_se, compare

BASELINES = (("baseline_gt_cls", "the whole image"), ("mean_box_gt_cls", "the mean training box"))


def baseline_verdicts(errors: dict) -> list[tuple[str, Verdict]]:
    """Does the network's box (true class given, dense) beat each box that needs no network? One
    ``evidence.compare`` per baseline present in ``errors``, with each error's binomial standard error on
    the ``errors["n"]`` validation images (one run: the interval is the test set's sampling alone; the
    same images score both, so it is, if anything, too wide)."""
    n, ours = errors["n"], 100 * errors["gt_cls_dense"]
    out = []
    for key, name in BASELINES:
        if key not in errors:
            continue
        base = 100 * errors[key]
        out.append((name, compare("the network's boxes", [ours], name, [base], digits=1,
                                  se=(binomial_se(ours, n), binomial_se(base, n)))))
    return out


def verdict_markdown(errors: dict) -> str:
    """Markdown bullets for notebook 06, every sentence from the numbers in ``errors``, ending with what the
    notebook's criterion (beat both network-free boxes) concludes."""
    lines, verdicts = [], baseline_verdicts(errors)
    for name, v in verdicts:
        why = ""
        if v.status == NOT_SHOWN:
            why = f" The network does not beat {name} by more than the sampling of {errors['n']} images allows."
        elif v.status == CONTRADICTED:
            why = f" {name[0].upper() + name[1:]} localizes better than the network: its head has not learned boxes."
        lines.append(f"- Against {name}: {v.text}{why}")
    if "mean_iou_dense_vs_mean_box" in errors:
        lines.append(f"- Mean IoU with the truth: the network {errors['mean_iou_dense']:.2f}, the mean training box "
                     f"{errors['mean_iou_mean_box']:.2f}, the whole image {errors['mean_iou_baseline']:.2f}. The "
                     f"network's boxes have mean IoU **{errors['mean_iou_dense_vs_mean_box']:.2f}** with the mean "
                     "box itself" + (": they are mostly that one central box." if
                                     errors["mean_iou_dense_vs_mean_box"] >= 0.8 else "."))
    beaten = [name for name, v in verdicts if v.status != SHOWN]
    lines.append("- **By the criterion above, this run localizes: it beats both boxes that need no network.**"
                 if not beaten else f"- **By the criterion above, this run does not localize beyond a box that needs "
                                    f"no network** (not beaten: {', '.join(beaten)}).")
    return "\n".join(lines)
