"""Section 4.2's claims on a grid of CIFAR-10 runs, as verdicts (notebook 03): degradation, the shortcuts,
deeper is better, each through :func:`evidence.compare` on the runs' final training error; and what the
reader's short run shows beside the shipped longer runs. The grid itself is ``cifar_grid``."""
from __future__ import annotations

from ..base.paper import targets
from ..engine.state import device_names
from .evidence import CONTRADICTED, NOT_SHOWN, SHOWN, Verdict, binomial_se, compare

CHANCE_PCT = 90.0  # CIFAR-10's error when a net has learned nothing: ten classes


def trained_on(r: dict) -> str:
    """Where a shipped run trained (its pieces' devices, or its recorded GPU); empty for the reader's runs."""
    devices = device_names(r.get("pieces") or [])
    return devices if devices and "gpu" in r else (r.get("gpu") or "").replace("NVIDIA ", "")


def train_images_behind(result: dict) -> int:
    """How many training images a run's final training error is averaged over: the batches since the last
    evaluation before the end (the engine's window), so its sampling error is :func:`evidence.binomial_se` of this."""
    cfg = result["config"]
    every, iters = cfg["eval_every"], cfg["iters"]
    window = iters - (iters - 1) // every * every  # iterations after the last evaluation before the final one
    return int(window * cfg["batch_size"])


def _train_errs(results: list[dict]) -> dict[str, list[float]]:
    by = {}
    for r in results:
        by.setdefault(r["name"], []).append(100 * r["final"]["train_err"])
    return by


def depth_verdicts(results: list[dict], one_run_se: bool = False, what: str = "") -> list[dict]:
    """Fig. 6's claims on final training error (Sec. 4.2), each through :func:`evidence.compare` over the runs'
    seeds: (1) degradation, the deeper plain net ends higher than the shallower; (2) at the deeper depth the
    ResNet ends below the plain net; (3) the deeper ResNet ends below the shallower one. The shallowest and
    deepest depths run as both kinds are compared. ``one_run_se``: arms with one run each take the paper's own
    spread over seeds (ResNet-110's std, Table 6) as each run's standard error (at least its training images'
    sampling error), and the verdict says so; ``what`` names the runs in that sentence (e.g. "one run each,
    seed 0")."""
    errs = _train_errs(results)
    depths = sorted({r["spec"]["depth"] for r in results})
    plain = [d for d in depths if f"plain-{d}" in errs]
    res = [d for d in depths if f"ResNet-{d}" in errs]
    both = [d for d in depths if d in plain and d in res]
    # the shallowest and deepest depths run as both kinds; where fewer than two are, each kind on its own
    pl, rs = (both, both) if len(both) >= 2 else (plain, res)
    claims = [("degradation", f"plain-{pl[0]}", f"plain-{pl[-1]}",
               f"plain-{pl[-1]} ends with a higher training error than plain-{pl[0]} (degradation, Fig. 1 and Fig. 6 "
               "left)") if len(pl) >= 2 else ("degradation", None, None, "degradation (Fig. 6 left): these runs hold "
                                                                        "fewer than two depths of plain net"),
              ("shortcuts", f"ResNet-{both[-1]}", f"plain-{both[-1]}",
               f"ResNet-{both[-1]} ends below plain-{both[-1]} (the shortcuts, Fig. 6)") if both else
              ("shortcuts", None, None, "the shortcuts (Fig. 6): these runs hold no depth with both kinds of net"),
              ("deeper", f"ResNet-{rs[-1]}", f"ResNet-{rs[0]}",
               f"ResNet-{rs[-1]} ends with a lower training error than ResNet-{rs[0]} (deeper is better, Fig. 6 "
               "middle)") if len(rs) >= 2 else
              ("deeper", None, None, "deeper is better (Fig. 6 middle): these runs hold fewer than two depths of ResNet")]
    window = {r["name"]: train_images_behind(r) for r in results}
    ref = targets()["cifar10_table6_test_error_pct"]["ResNet-110"]
    seed_std = ref["std"]
    out, verdicts = [], {}
    for kind, better, worse, claim in reversed(claims):  # deeper-is-better first: degradation's check reads it
        if better is None:
            out.insert(0, {"claim": claim.split(":")[0], "status": NOT_SHOWN, "kind": kind, "better": None,
                           "worse": None, "residual": kind != "degradation",
                           "text": f"Not shown by these runs: {claim.split(': ')[1]}."})
            continue
        a, b = errs[better], errs[worse]
        se = None
        if one_run_se and len(a) == 1 and len(b) == 1:
            # one run each: the spread over seeds is not measured here, and the training images behind an error
            # are not independent draws (the same 50k, augmented); the paper's own spread over seeds stands in
            se = (max(seed_std, binomial_se(a[0], window[better])), max(seed_std, binomial_se(b[0], window[worse])))
        apart = _devices_apart(results, better, worse)
        v = compare(better, a, worse, b, chance=CHANCE_PCT, se=se,
                    se_source=f"{what or 'one run each'}, so the spread over seeds is not measured: the paper's own std "
                              f"over {ref['runs']} runs of ResNet-110 ({seed_std} points) stands in for each run's{apart}")
        if kind == "degradation":
            v = _unless_a_slow_start(v, verdicts.get("deeper"))
        verdicts[kind] = v
        out.insert(0, {"claim": claim, "status": v.status, "text": v.text, "better": better, "worse": worse,
                       "residual": kind != "degradation", "kind": kind, "gap": v.gap})
    return out


def _devices_apart(results: list[dict], better: str, worse: str) -> str:
    """A clause for a verdict whose two nets trained on different devices (shipped runs); empty otherwise."""
    where = {n: {trained_on(r) for r in results if r["name"] == n} for n in (better, worse)}
    if where[better] == where[worse] or not all(where.values()):
        return ""
    return (f"; {better} trained on {' + '.join(sorted(where[better]))} and {worse} on "
            f"{' + '.join(sorted(where[worse]))}, so the gap also holds the devices' arithmetic")


def _unless_a_slow_start(degradation: Verdict, deeper: Verdict | None) -> Verdict:
    """The plain nets' verdict, not counted when the ResNets (``deeper``: the deeper ResNet against the shallower)
    lose with depth too, beyond their interval: this early any deeper net is behind, so the plain nets' gap cannot
    be told from a slower start."""
    if degradation.status != SHOWN or deeper is None or deeper.status != CONTRADICTED:
        return degradation
    return Verdict(NOT_SHOWN, (
        f"Not shown by this run: the plain nets' gap ({degradation.numbers}) comes with the ResNets losing with "
        f"depth too ({deeper.numbers}, beyond its interval): this early in training any deeper net is still behind, "
        "so the gap cannot be told from a slower start; the paper's degradation is a deeper plain net that stays "
        "behind while the deeper ResNet does not."), degradation.gap, None, degradation.numbers)  # a refusal, not inside


def own_run_summary(own: list[dict], shipped: list[dict], shipped_name: str = "the shipped runs above",
                    more: tuple = ()) -> str:
    """What the reader's run shows, and for each claim it does not show, whether ``shipped`` (the same kinds
    of claim from longer runs, :func:`depth_verdicts`, matched by kind, each at its own depths) or any of
    ``more`` (pairs of a name and such verdicts) shows it: no claim is sent to shipped runs as its evidence
    unless they show it, and every source's verdict is named."""
    shown = [v for v in own if v["status"] == SHOWN]
    against = [v for v in own if v["status"] == CONTRADICTED]
    head = f"Your run shows {len(shown)} of the {len(own)} claims" + \
        (f" and contradicts {len(against)}" if against else "")
    if len(shown) == len(own):
        return head + "."
    sources = [(shipped_name, {s.get("kind"): s for s in shipped})] + [(n, {s.get("kind"): s for s in vs})
                                                                       for n, vs in more]
    parts = [head + " (each line says why)."]
    for v in own:
        if v["status"] == SHOWN:
            continue
        found = [(n, by[v.get("kind")]) for n, by in sources if v.get("kind") in by]
        if found:
            said = [f"{'shown' if s['status'] == SHOWN else s['status']} by {n}, at their own depths (*{s['claim']}*)"
                    for n, s in found]
            parts.append(f"*{v['claim']}*: " + "; ".join(said) + ".")
    return " ".join(parts) + " Raise `ITERS` to test the claims further in your own run."


def verdict_markdown(verdicts: list[dict]) -> str:
    return "\n".join(f"- **{v['claim']}**: {v['text']}" for v in verdicts)
