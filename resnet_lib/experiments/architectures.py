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
    worst = max((r for r in summary if r["rel_diff"] is not None), key=lambda r: abs(r["rel_diff"]))
    return (
        f"- Every FLOPs count is within **{100 * worst_flops_difference(summary):.2f}%** of Table 1; the largest "
        f"difference is {worst['name']}'s ({worst['macs'] / 1e9:.2f} x10^9 against the paper's "
        f"{worst['paper_macs'] / 1e9:.2f} x10^9). ResNet-50 is at {r50:.2f} x10^9 with the paper's stride placement.\n"
        f"- {sum(bool(p['params_equal']) for p in parity)} of {len(parity)} ResNets have exactly torchvision's "
        f"parameters and load its state_dict strictly; the largest output difference is "
        f"{max(p['max_abs_output_diff'] for p in parity):.1e}.\n"
        f"- {sum(bool(c['equal']) for c in cifar)} of {len(cifar)} CIFAR nets have exactly the parameters their "
        "description implies, which round to Table 6's.")


def shortcut_cost(summary: list[dict]) -> list[dict]:
    """What option B's projection shortcuts add to each depth that has a plain twin: multiply-adds of the
    plain and the residual net, and the residual net's excess in %. (Option A's zero-padding adds nothing.)"""
    by_name = {r["name"]: r for r in summary}
    rows = []
    for r in summary:
        if r["name"].startswith("plain-") and f"ResNet-{r['name'][6:]}" in by_name:
            res = by_name[f"ResNet-{r['name'][6:]}"]
            rows.append({"depth": int(r["name"][6:]), "plain (x10^9)": r["macs"] / 1e9,
                         "ResNet, option B (x10^9)": res["macs"] / 1e9,
                         "ResNet over plain (%)": 100 * (res["macs"] / r["macs"] - 1),
                         "extra parameters (M)": (res["params"] - r["params"]) / 1e6})
    return rows


def shortcut_cost_text(rows: list[dict]) -> str:
    """One sentence per depth, from :func:`shortcut_cost`'s numbers."""
    if not rows:
        return "No depth here has both a plain and a residual net, so the shortcuts' cost is not measured."
    parts = [f"at {r['depth']} layers ResNet {r['ResNet, option B (x10^9)']:.3f} against plain "
             f"{r['plain (x10^9)']:.3f} x10^9 multiply-adds, **{r['ResNet over plain (%)']:.2f}% more**"
             for r in rows]
    return ("Option B's three projection shortcuts cost: " + "; ".join(parts) + ". With option A (zero-padding) "
            "the two nets would have the same multiply-adds but for the element-wise additions: the paper says identity "
            "shortcuts add no extra parameter and negligible computation (Sec. 3.2), which is why its 18/34-layer "
            "comparison (Sec. 4.1) uses them.")


def training_cost(macs: float, iters: int = 600_000, batch: int = 256, backward_factor: float = 3.0) -> float:
    """Multiply-adds to train one network with Section 3.4's schedule: forward and backward (about
    ``backward_factor`` times the forward pass) over ``iters x batch`` images."""
    return backward_factor * macs * iters * batch


def table3_rows(options: list[dict], summary: list[dict]) -> list[dict]:
    """Table 3 beside our counts: the paper's 10-crop top-1 / top-5 errors (not reproduced here) with the
    parameters of the network we build for each row and what training it with Section 3.4's recipe costs."""
    from ..base.paper import targets
    paper = targets()["imagenet_table3_10crop_val_top1_top5"]
    params = {}
    for r in options:
        for o in "ABC":
            params[f"{r['network']} {o}"] = r[f"option {o} params (M)"]
    macs = {r["name"]: r["macs"] for r in summary}
    rows = []
    for name, (top1, top5) in paper.items():
        ours = params.get(name, params.get(f"{name} B"))
        if name == "plain-34":
            ours = next((r["params"] / 1e6 for r in summary if r["name"] == "plain-34"), None)
        base = name.split(" ")[0]
        m = macs.get(base)
        rows.append({"model": name, "paper top-1 err (%)": top1, "paper top-5 err (%)": top5,
                     "our params (M)": None if ours is None else round(ours, 2),
                     "to train it: x10^18 multiply-adds (A, C: B's count)":
                         None if m is None else round(training_cost(m) / 1e18, 2)})
    return rows
