"""Notebook 02 beside the paper: its results rows and verdicts, computed from ``models.complexity``'s counts
(``table1_summary``, ``cifar_params``) and ``models.imagenet.torchvision_parity``'s checks."""
from __future__ import annotations

PLAIN34_OVER_VGG19_PAPER = 18.0  # %, Sec. 3.3: "our 34-layer baseline has 3.6 billion FLOPs ... only 18% of VGG-19"


def plain34_over_vgg19(summary: list[dict]) -> float | None:
    """plain-34's multiply-adds over VGG-19's (Sec. 3.3), or None when the summary lacks one of them."""
    by_name = {r["name"]: r for r in summary}
    if "plain-34" not in by_name:
        return None
    return by_name["plain-34"]["macs"] / by_name["VGG-19"]["macs"]


def worst_flops_difference(summary: list[dict]) -> float:
    """The largest relative difference of our FLOPs to Table 1's, over the networks the paper counts."""
    return max(abs(r["rel_diff"]) for r in summary if r["rel_diff"] is not None)


def flops_verdict(summary: list[dict]) -> str:
    ratio, worst = plain34_over_vgg19(summary), worst_flops_difference(summary)
    head = f"plain-34 / VGG-19 = **{100 * ratio:.1f}%** (paper: 18%). " if ratio else ""
    return head + f"Largest FLOPs difference to Table 1: **{100 * worst:.2f}%**."


def paper_rows(summary: list[dict], parity: list[dict], cifar: list[dict], *, input_size: int, stride_in: str) -> list[dict]:
    """Notebook 02's rows: FLOPs per network beside Table 1, plain-34 / VGG-19, torchvision parity and the CIFAR
    nets' parameter counts beside Table 6."""
    rows = [{"quantity": f"FLOPs {r['name']}", "ours": round(r["macs"] / 1e9, 3),
             "paper": None if r["paper_macs"] is None else r["paper_macs"] / 1e9, "unit": "x10^9 multiply-adds",
             "note": f"conv+fc multiply-adds at {input_size}x{input_size}, bottleneck stride on {stride_in}"}
            for r in summary]
    ratio = plain34_over_vgg19(summary)
    if ratio:
        rows.append({"quantity": "plain-34 FLOPs / VGG-19 FLOPs", "ours": round(100 * ratio, 1),
                     "paper": PLAIN34_OVER_VGG19_PAPER, "unit": "%", "note": "Sec. 3.3"})
    rows.append({"quantity": "ResNets with torchvision's parameter count and strict state_dict load",
                 "ours": f"{sum(bool(p['params_equal']) for p in parity)}/{len(parity)}", "paper": None, "unit": "",
                 "note": "depths " + ", ".join(str(p["depth"]) for p in parity)})
    rows += [{"quantity": f"params CIFAR ResNet-{r['depth']}", "ours": r["params"], "paper": r["paper"],
              "unit": "parameters", "note": "option A; Table 6 prints it rounded"} for r in cifar]
    return rows


def verdict(summary: list[dict], parity: list[dict], cifar: list[dict]) -> str:
    """What notebook 02's counts show, in Markdown bullets."""
    by_name = {r["name"]: r for r in summary}
    r50 = by_name.get("ResNet-50", {}).get("macs", float("nan")) / 1e9
    return (
        f"- Every FLOPs count is within **{100 * worst_flops_difference(summary):.2f}%** of Table 1 "
        f"(ResNet-50 at {r50:.2f} x10^9 with the paper's stride placement).\n"
        f"- {sum(bool(p['params_equal']) for p in parity)} of {len(parity)} ResNets have exactly torchvision's "
        f"parameters and load its state_dict strictly; the largest output difference is "
        f"{max(p['max_abs_output_diff'] for p in parity):.1e}.\n"
        f"- {sum(bool(c['equal']) for c in cifar)} of {len(cifar)} CIFAR nets have exactly the parameters their "
        "description implies, which round to Table 6's.")
