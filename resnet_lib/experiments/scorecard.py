"""The scorecard: claim by claim, what this project has reproduced of the paper, computed from the results.

Each claim the notebooks touch is read from the sources that can speak to it, largest scale first: the
shipped paper-scale runs (``results/``), shorter shipped runs, then the reader's own run (the main job's
``outputs/<notebook>/results.json``). The first source that has both sides of the comparison decides the
status; the others are listed beside it, each named with its scale, so that toy-scale and paper-scale
numbers never stand in one line unlabelled. Every comparison goes through :func:`evidence.compare` (one rule:
an arm near chance or diverged, one seed, or a gap inside its interval is "not shown"), mapped to:

- ``reproduced``: shown (for Table 6: the gap to the paper's number is inside its interval, or ours is lower);
- ``partly``: points the paper's way but not shown (one seed, a gap inside its interval), or some of a
  claim's comparisons shown and not others;
- ``not reproduced``: contradicted, pointing the other way, or not learned enough to count;
- ``not yet run``: the project has a way to run it (said) and no result yet;
- ``beyond this project's data``: it needs data the project does not have (what it would take is said).

Files that are missing or written in a form this module does not know count as "not yet run": other parts of
the project add results over time, and the scorecard reads what exists.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..base.paper import targets
from .evidence import CONTRADICTED, SHOWN, Verdict, binomial_se, compare
from .scorecard_sources import (
    NB,
    by_net,
    imagenet_runs,
    n_val,
    quarter_runs,
    reader_cifar,
    reader_results,
    response_sources,
    shipped_cifar,
    shown,
)

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
NOT_YET, BEYOND = "not yet run", "beyond this project's data"
STATUSES = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_YET, BEYOND)
CIFAR_CHANCE = 90.0  # % error of a 10-class guess
FULL_ITERS = 64_000  # Section 4.2's schedule
QUARTER_ITERS = FULL_ITERS // 4  # bench/gpu_fig6.py's runs in results/h200
IMAGENET_NEEDS = "ImageNet-1k (1.28M training images) and, per net, the paper's 600k iterations of batch 256"


@dataclass(frozen=True)
class Evidence:
    """One source's reading of a claim: its scale, the verdict(s) and the files behind them."""
    scale: str
    verdicts: tuple[Verdict, ...]
    files: tuple[str, ...]
    status: str


@dataclass(frozen=True)
class Claim:
    key: str
    claim: str
    paper: str                  # where the paper says it, and its numbers
    section: tuple[str, str]    # (notebook stem, words of the heading that shows it)
    status: str
    said: str                   # the deciding source's scale and verdicts, or why there is none
    evidence: tuple[Evidence, ...] = ()
    needs: str = ""             # what the paper's scale would take, where it is beyond this project's data
    files: tuple[str, ...] = field(default=())


# ----------------------------------------------------------------------------- verdicts -> statuses

def status_of(v: Verdict) -> str:
    """A comparison's status: shown, contradicted, or not shown pointing the paper's way (gap > 0) or not."""
    if v.status == SHOWN:
        return REPRODUCED
    if v.status == CONTRADICTED:
        return NOT_REPRODUCED
    return PARTLY if v.gap is not None and v.gap > 0 else NOT_REPRODUCED


def combine(statuses) -> str:
    """Several comparisons of one claim: all alike keep that status; any mix of them is ``partly``."""
    s = set(statuses)
    return s.pop() if len(s) == 1 else PARTLY


def _cell(values) -> str:
    m = sum(values) / len(values)
    if len(values) < 2:
        return f"{m:.2f}"
    return f"{m:.2f} ± {math.sqrt(sum((x - m) ** 2 for x in values) / (len(values) - 1)):.2f}"


def _evidence(scale: str, verdicts: list[Verdict], files, status: str | None = None) -> Evidence:
    return Evidence(scale, tuple(verdicts), tuple(files), status or combine(status_of(v) for v in verdicts))


def _claim(key, claim, paper, section, sources, *, here: str = "", needs: str = "") -> Claim:
    """The claim's status from its first source with data; without any, ``not yet run`` when the project can run
    it (``here`` says how), else ``beyond this project's data`` (``needs`` says what it would take)."""
    found = [e for e in sources if e is not None]
    if found:
        first = found[0]
        said = f"{first.scale}: " + " ".join(v.text for v in first.verdicts)
        return Claim(key, claim, paper, section, first.status, said, tuple(found), needs,
                     tuple(f for e in found for f in e.files))
    if here:
        return Claim(key, claim, paper, section, NOT_YET, f"No result yet; {here}.", (), needs)
    return Claim(key, claim, paper, section, BEYOND, f"Needs {needs}.", (), needs)


# ----------------------------------------------------------------------------- CIFAR-10 (Section 4.2)

def cifar_sources(root: Path, outputs: Path | None, metric: str) -> list[tuple[str, dict]]:
    """(scale, ``by_net`` of ``metric``) of each CIFAR-10 source, largest scale first."""
    reader, path = reader_cifar(outputs)
    return [("paper's recipe (64k iterations, all of CIFAR-10, shipped)",
             by_net(shipped_cifar(root), metric, iters=FULL_ITERS)),
            ("paper's recipe in bf16 autocast (64k iterations, shipped; the precision study's runs, not Table 6's "
             "fp32)", by_net(shipped_cifar(root, "bf16"), metric, iters=FULL_ITERS)),
            ("a quarter of the recipe (16k iterations, all of CIFAR-10, shipped)",
             by_net(quarter_runs(root), metric, iters=QUARTER_ITERS)),
            (f"your run (notebook 03's parameters, toy scale unless set to the paper's; `{shown(path)}`)",
             by_net(reader, metric, shortcut=None))]


def _steps(by: dict, residual: bool, scale: str, chance: float | None = CIFAR_CHANCE) -> Evidence | None:
    """Plain nets: the shallowest against the deepest (the deeper should err more). ResNets: each depth against
    the next shallower one (the deeper should err less)."""
    depths = sorted(d for (res, d) in by if res == residual)
    if len(depths) < 2:
        return None
    if residual:
        pairs = [(b, a) for a, b in zip(depths, depths[1:])]  # (better, worse) as the paper has them
        kind = "ResNet"
    else:
        pairs, kind = [(depths[0], depths[-1])], "plain"
    vs = [compare(f"{kind}-{good}", by[(residual, good)][0], f"{kind}-{bad}", by[(residual, bad)][0], chance=chance)
          for good, bad in pairs]
    files = [f for pair in pairs for d in pair for f in by[(residual, d)][1]]
    return _evidence(scale, vs, dict.fromkeys(files))


def degradation_cifar(root: Path, outputs: Path | None) -> Claim:
    """Fig. 6 (left): the deeper plain net ends with the higher training error."""
    sources = [_steps(by, False, scale) for scale, by in cifar_sources(root, outputs, "train_err")]
    return _claim("degradation_cifar", "Deeper plain nets train worse (degradation), CIFAR-10",
                  "Fig. 6 left: plain-56 above plain-20 in training error", (NB["03"], "Fig. 6"), sources,
                  here="`python -m resnet_lib campaign table6` trains the plain nets")


def deeper_resnets_cifar(root: Path, outputs: Path | None) -> Claim:
    """Table 6: a deeper ResNet ends with a lower test error, depth step by depth step."""
    sources = [_steps(by, True, scale) for scale, by in cifar_sources(root, outputs, "test_err")]
    paper = targets()["cifar10_table6_test_error_pct"]
    steps = " > ".join(str(paper[f"ResNet-{d}"] if d != 110 else paper["ResNet-110"]["mean"]) for d in (20, 32, 44, 56, 110))
    return _claim("deeper_resnets_cifar", "Deeper ResNets err less, CIFAR-10",
                  f"Table 6: ResNet-20/32/44/56/110 {steps} %", (NB["03"], "Table 6"), sources,
                  here="`python -m resnet_lib campaign table6` trains every depth")


def table6_depth(root: Path, depth: int) -> Claim:
    """Our full-recipe test error of ResNet-``depth`` against Table 6's: with two seeds or more, reproduced when
    the gap to the paper's number is inside its interval (ours' spread over seeds, the paper's over its runs or
    else its test set's sampling) or ours is lower; one seed is ``partly`` (or ``not reproduced``) at most."""
    t = targets()["cifar10_table6_test_error_pct"][f"ResNet-{depth}"]
    by = by_net(shipped_cifar(root), "test_err", iters=FULL_ITERS).get((True, depth))
    paper, paper_se = (t["mean"], t["std"] / math.sqrt(t["runs"])) if isinstance(t, dict) else (t, binomial_se(t, 10_000))
    label = f"{paper} (mean of {t['runs']} runs, std {t['std']})" if isinstance(t, dict) else f"{paper}"
    key, what = f"table6_{depth}", f"Table 6, ResNet-{depth}: test error"
    if by is None:
        bf16 = by_net(shipped_cifar(root, "bf16"), "test_err", iters=FULL_ITERS).get((True, depth))
        aside = f" (in bf16 autocast, the precision study's policy, it ends at {_cell(bf16[0])} %, n={len(bf16[0])})" \
            if bf16 else ""
        return _claim(key, what, f"{label} %", (NB["03"], "Table 6"), [],
                      here=f"the `table6` campaign has not finished ResNet-{depth} in fp32 yet{aside}")
    errs, files = by
    scale = "paper's recipe (64k iterations, all of CIFAR-10, shipped)"
    if len(errs) < 2:  # one evaluation on the 10k test images: its sampling is the interval; one seed is partly at most
        v = compare("the paper", [paper], f"ResNet-{depth} here", errs, se=(paper_se, binomial_se(errs[0], 10_000)))
        status = NOT_REPRODUCED if v.status == SHOWN else PARTLY
    else:
        sd = math.sqrt(sum((e - sum(errs) / len(errs)) ** 2 for e in errs) / (len(errs) - 1))
        v = compare("the paper", [paper], f"ResNet-{depth} here", errs, se=(paper_se, sd / math.sqrt(len(errs))))
        status = NOT_REPRODUCED if v.status == SHOWN else REPRODUCED
    reading = {SHOWN: "ours is higher, beyond the interval", CONTRADICTED: "ours is lower, beyond the interval"}.get(
        v.status, "inside the interval" + ("; one seed, so partly at most" if len(errs) < 2 else ""))
    source = "the paper's spread over its runs" if isinstance(t, dict) else "the test set's sampling"
    text = (f"ResNet-{depth} here {_cell(errs)} % (n={len(errs)}) against the paper's {paper} %: gap "
            f"{v.gap:+.2f} points, interval ±{v.interval:.2f} ({source} and ours); {reading}.")
    v = Verdict(v.status, text, v.gap, v.interval)
    return _claim(key, what, f"{label} %", (NB["03"], "Table 6"), [_evidence(scale, [v], files, status)])


def shortcut_options(root: Path) -> Claim:
    """Table 3: projection shortcuts (B, C) slightly better than identity (A); read from shipped CIFAR runs with
    option B or C beside option A at the same depth, where there are any."""
    runs = shipped_cifar(root)
    a = by_net(runs, "test_err", iters=FULL_ITERS, shortcut="A")
    vs, files = [], []
    for opt in ("B", "C"):
        other = by_net(runs, "test_err", iters=FULL_ITERS, shortcut=opt)
        for key in sorted(set(other) & set(a)):
            vs.append(compare(f"option {opt}-{key[1]}", other[key][0], f"option A-{key[1]}", a[key][0]))
            files += a[key][1] + other[key][1]
    t3 = targets()["imagenet_table3_10crop_val_top1_top5"]
    paper = ", ".join(f"{o} {t3[f'ResNet-34 {o}'][0]}" for o in "ABC")
    ev = [_evidence("paper's recipe on CIFAR-10 (shipped)", vs, dict.fromkeys(files))] if vs else []
    return _claim("shortcuts", "Projection shortcuts (B, C) slightly better than identity (A)",
                  f"Table 3, ResNet-34 top-1 10-crop: {paper} %", (NB["02"], "Shortcut options"), ev,
                  needs=f"{IMAGENET_NEEDS}, three times (options A, B and C); the campaign has no CIFAR-10 B/C set yet")


# ----------------------------------------------------------------------------- Fig. 7: layer responses

def _responses(root, outputs, residual_vs_plain: bool) -> list[Evidence | None]:
    found = []
    for scale, med, files in response_sources(root, outputs):
        depths = sorted({int(n.split("-")[1]) for n in med if n.split("-")[-1].isdigit()})
        if residual_vs_plain:
            pairs = [(f"ResNet-{d}", f"plain-{d}") for d in depths if f"ResNet-{d}" in med and f"plain-{d}" in med]
        else:
            rd = [d for d in depths if f"ResNet-{d}" in med]
            pairs = [(f"ResNet-{b}", f"ResNet-{a}") for a, b in zip(rd, rd[1:])]
        vs = [compare(good, [med[good]], bad, [med[bad]], unit="", digits=3) for good, bad in pairs]
        found.append(_evidence(scale, vs, files) if vs else None)
    return found


def responses_resnet_vs_plain(root: Path, outputs: Path | None) -> Claim:
    return _claim("responses_vs_plain", "ResNets' layer responses are smaller than plain nets'",
                  "Fig. 7: std of each 3x3 layer's BN output, ResNets below plain (no numbers printed)",
                  (NB["04"], "Fig. 7"), _responses(root, outputs, True),
                  here="`python -m resnet_lib campaign table6 --export results/cifar10` writes the responses")


def responses_with_depth(root: Path, outputs: Path | None) -> Claim:
    return _claim("responses_depth", "Deeper ResNets' layer responses are smaller",
                  "Fig. 7: ResNet-20 > 56 > 110 in response std (no numbers printed)", (NB["04"], "Fig. 7"),
                  _responses(root, outputs, False),
                  here="`python -m resnet_lib campaign table6 --export results/cifar10` writes the responses")


# ----------------------------------------------------------------------------- ImageNet (Tables 2-4), Tiny ImageNet here

def _imagenet_pair(root, outputs, kind: str, residual_better_when_deeper: bool) -> list[Evidence | None]:
    found = []
    for scale, errs, files in imagenet_runs(root, outputs):
        depths = sorted(int(n.split("-")[1]) for n in errs if n.startswith(kind + "-"))
        if len(depths) < 2:
            found.append(None)
            continue
        lo, hi = f"{kind}-{depths[0]}", f"{kind}-{depths[-1]}"
        good, bad = (hi, lo) if residual_better_when_deeper else (lo, hi)
        found.append(_evidence(scale, [compare(good, errs[good], bad, errs[bad])],
                               dict.fromkeys(files[good] + files[bad])))
    return found


def degradation_imagenet(root: Path, outputs: Path | None) -> Claim:
    t2 = targets()["imagenet_table2_top1_10crop"]
    return _claim("degradation_imagenet", "Deeper plain nets train worse (degradation), ImageNet",
                  f"Table 2: plain-18 {t2['plain-18']} %, plain-34 {t2['plain-34']} % top-1 (10-crop)",
                  (NB["05"], "Beside the paper"), _imagenet_pair(root, outputs, "plain", False),
                  here="plain-18/34 on Tiny ImageNet (issue #27 ships them under `results/imagenet_tiny/`)",
                  needs=IMAGENET_NEEDS)


def deeper_resnets_imagenet(root: Path, outputs: Path | None) -> Claim:
    t2 = targets()["imagenet_table2_top1_10crop"]
    return _claim("deeper_resnets_imagenet", "Deeper ResNets err less, ImageNet",
                  f"Table 2: ResNet-18 {t2['ResNet-18']} %, ResNet-34 {t2['ResNet-34']} % top-1 (10-crop)",
                  (NB["05"], "Beside the paper"), _imagenet_pair(root, outputs, "ResNet", True),
                  here="ResNet-18/34 on Tiny ImageNet (issue #27 ships them under `results/imagenet_tiny/`)",
                  needs=IMAGENET_NEEDS)


# ----------------------------------------------------------------------------- test modes, localization, detection

def test_modes(root: Path, outputs: Path | None) -> Claim:
    """Tables 2-4: 10 crops beat one centre crop, and multi-scale fully-convolutional testing beats 10 crops, on
    one model: the interval is the validation set's sampling (``binomial_se``), as the model is the same."""
    rec, path = reader_results(outputs, NB["05"])
    tests, n = (rec or {}).get("tests"), n_val(rec or {})
    ev = None
    try:
        c, t, m = (float(tests[k]["top1"]) for k in ("center", "10crop", "multiscale"))
        se = (lambda a, b: None) if not n else (lambda a, b: (binomial_se(a, n), binomial_se(b, n)))
        vs = [compare("10-crop", [t], "centre crop", [c], se=se(t, c)),
              compare("multi-scale", [m], "10-crop", [t], se=se(m, t))]
        ev = _evidence(f"your run (notebook 05, Tiny ImageNet, {n or '?'} validation images, toy scale; `{shown(path)}`)",
                       vs, [path])
    except (TypeError, KeyError, ValueError):
        pass
    t3, t4 = targets()["imagenet_table3_10crop_val_top1_top5"], targets()["imagenet_table4_single_model_val_top1_top5"]
    return _claim("test_modes", "10-crop beats one crop; multi-scale fully-convolutional beats 10-crop",
                  f"Tables 3-4, ResNet-34 B top-1: 10-crop {t3['ResNet-34 B'][0]} %, multi-scale {t4['ResNet-34 B'][0]} %",
                  (NB["05"], "Testing: 10 crops"), [ev], here="run notebook 05 (`make run`)", needs=IMAGENET_NEEDS)


BASELINES = {"baseline_gt_cls": "whole-image", "baseline_mean_box": "mean training"}  # notebook 06's names


def localization(root: Path, outputs: Path | None) -> Claim:
    """Table 13: the per-class RPN localizes better than a box that needs no network (the strongest baseline the
    notebook records: the whole image, or the mean training box)."""
    rec, path = reader_results(outputs, NB["06"])
    errors = (rec or {}).get("errors") if isinstance((rec or {}).get("errors"), dict) else {}
    base = {k: v for k, v in errors.items() if k.startswith("baseline") and isinstance(v, (int, float))}
    ev = None
    if isinstance(errors.get("gt_cls_dense"), (int, float)) and base:
        name, err = min(base.items(), key=lambda kv: kv[1])
        v = compare("RPN localizer (dense, true class)", [100 * errors["gt_cls_dense"]],
                    f"{BASELINES.get(name, name.replace('_', ' '))} box", [100 * err])
        ev = _evidence(f"your run (notebook 06, Tiny ImageNet, toy scale; `{shown(path)}`)", [v], [path])
    t13 = targets()["loc_table13_val_err"]
    return _claim("localization", "A ResNet with a per-class RPN localizes well (true class given)",
                  f"Table 13: ResNet-101 RPN {t13['RPN R101 dense GT-CLS']} % LOC error against VGG-16's "
                  f"{t13['VGG-16 1-crop GT-CLS']} %", (NB["06"], "the localization error"), [ev],
                  here="run notebook 06 (`make run`)",
                  needs="ImageNet-1k with its localization boxes and an ImageNet-trained ResNet-101 (see above)")


def detection(root: Path, outputs: Path | None) -> Claim:
    """Tables 7-8: the residual backbone gives a higher mAP than the plain one, compared as 100 - mAP@0.5."""
    rec, path = reader_results(outputs, NB["07"])
    maps = (rec or {}).get("maps") if isinstance((rec or {}).get("maps"), dict) else {}
    res = [n for n in maps if n.lower().startswith("resnet") and isinstance(maps[n], dict) and "map_50" in maps[n]]
    plain = [n for n in maps if not n.lower().startswith("resnet") and isinstance(maps[n], dict) and "map_50" in maps[n]]
    ev = None
    if res and plain:
        r, p = res[0], plain[0]
        v = compare(f"{r} (100 − mAP@0.5)", [100 - 100 * maps[r]["map_50"]], f"{p} (100 − mAP@0.5)",
                    [100 - 100 * maps[p]["map_50"]], unit="")
        ev = _evidence(f"your run (notebook 07, composed scenes, toy scale; `{shown(path)}`)", [v], [path])
    t8 = targets()["det_table8_coco_val"]["mAP@.5"]
    return _claim("detection", "A residual backbone detects better than a plain/VGG one",
                  f"Tables 7-8: COCO val mAP@.5 ResNet-101 {t8['ResNet-101']} against VGG-16 {t8['VGG-16']}",
                  (NB["07"], "mAP beside Tables 7"), [ev], here="run notebook 07 (`make run`)",
                  needs="PASCAL VOC 07+12 or COCO (118k images) and ImageNet-trained backbones (see above)")


# ----------------------------------------------------------------------------- the whole card

def scorecard(root: Path, outputs: Path | None = None) -> list[Claim]:
    """Every claim's status from ``root``'s ``results/`` and, when given, the reader's ``outputs/``."""
    root = Path(root)
    out = Path(outputs) if outputs else None
    return [degradation_cifar(root, out), degradation_imagenet(root, out), deeper_resnets_cifar(root, out),
            deeper_resnets_imagenet(root, out), shortcut_options(root), responses_resnet_vs_plain(root, out),
            responses_with_depth(root, out), *(table6_depth(root, d) for d in (20, 32, 44, 56, 110)),
            test_modes(root, out), localization(root, out), detection(root, out)]


def counts(claims: list[Claim]) -> dict[str, int]:
    return {s: sum(c.status == s for c in claims) for s in STATUSES if any(c.status == s for c in claims)}


def markdown(claims: list[Claim], link=lambda stem, words: f"notebooks/{stem}.ipynb",
             file_link=lambda f: f) -> str:
    """The card as a Markdown table; ``link(stem, heading words)`` gives each row's notebook link and
    ``file_link(path)`` each file's (numbered, to keep the rows short)."""
    esc = lambda s: str(s).replace("|", "\\|")
    lines = ["| claim | paper | status | what the numbers say | where |", "|---|---|---|---|---|"]
    for c in claims:
        files = list(dict.fromkeys(c.files))
        said = esc(c.said) + "".join(f"<br>Also {esc(e.scale)}: {e.status}." for e in c.evidence[1:])
        if c.needs and c.status != BEYOND:
            said += f"<br>At the paper's scale: needs {esc(c.needs)}."
        where = f"[{c.section[0][:2]} · {esc(c.section[1])}]({link(*c.section)})"
        if files:
            where += "<br>files: " + ", ".join(f"[{i}]({file_link(f)})" for i, f in enumerate(files, 1))
        lines.append(f"| {esc(c.claim)} | {esc(c.paper)} | **{c.status}** | {said} | {where} |")
    tally = ", ".join(f"{n} {s}" for s, n in counts(claims).items())
    return "\n".join(lines + ["", f"{len(claims)} claims: {tally}."])
