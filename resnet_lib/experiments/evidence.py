"""Verdicts that can say no: whether a run's numbers show one of the paper's claims.

Every notebook that reads its own runs as evidence for a claim ("the deeper plain net has the higher
training error", "the ResNet's responses are smaller") passes the numbers through :func:`compare`. A claim
counts as shown only when

- no arm diverged (a non-finite or exploding value),
- no seed of either arm is near chance (within :data:`CHANCE_MARGIN` points of it, for an error in %): a net
  that has learned nothing tells nothing about depth,
- every arm has at least two seeds, so that its spread is measured, and
- the gap points the claim's way by more than twice the standard error of the difference of the means
  (about a 95% interval that excludes zero).

Otherwise the verdict says "not shown by this run" and why, or "contradicted" where the gap points the
other way by more than its interval. A single evaluation on N images (one seed, one test set) can pass its
binomial standard error instead (:func:`binomial_se`); the verdict then says its interval is the test
set's sampling alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

CHANCE_MARGIN = 5.0   # points of error: a net within this of chance has not learned enough to count
EXPLODED = 1e4        # a response std or loss above this is a diverged net, not a measurement

SHOWN, NOT_SHOWN, CONTRADICTED = "shown", "not shown", "contradicted"


def mean_std(values) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for fewer than two values)."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("no values to average")
    m = sum(v) / len(v)
    return m, (math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else None)


def binomial_se(err_pct: float, n: int) -> float:
    """Standard error (points) of an error rate measured once on ``n`` images: the test set's sampling."""
    if n <= 0:
        raise ValueError(f"n must be a positive number of images, got {n}")
    p = min(max(err_pct / 100, 0.0), 1.0)
    return 100 * math.sqrt(p * (1 - p) / n)


def diverged(values, limit: float = EXPLODED) -> bool:
    """A non-finite value, or one past ``limit`` (an exploding loss or response)."""
    return any(not math.isfinite(float(x)) or abs(float(x)) > limit for x in values)


def near_chance(err_pct: float, chance_pct: float, margin: float = CHANCE_MARGIN) -> bool:
    return err_pct >= chance_pct - margin


@dataclass(frozen=True)
class Verdict:
    status: str                 # SHOWN, NOT_SHOWN or CONTRADICTED
    text: str                   # one sentence: what the numbers say, and why when not shown
    gap: float | None = None    # mean(worse) - mean(better): positive is the claim's way
    interval: float | None = None  # twice the standard error of the gap
    numbers: str = ""           # the means, the gap and its interval, for a sentence built on this verdict

    @property
    def shown(self) -> bool:
        return self.status == SHOWN

    @property
    def inside_interval(self) -> bool:
        """Not shown because the gap was measured and fell inside its interval (rather than refused for a
        near-chance arm, a divergence or a single seed)."""
        return self.status == NOT_SHOWN and self.interval is not None

    def __str__(self) -> str:
        return self.text


def _fmt(m: float, s: float | None, unit: str, digits: int) -> str:
    return f"{m:.{digits}f}{unit}" + (f" ± {s:.{digits}f}" if s is not None else "")


def mean_text(values: list[float]) -> str:
    """``mean%`` with `` ± std`` over seeds where there are two or more."""
    m, sd = mean_std(values)
    return f"{m:.1f}%" + (f" ± {sd:.1f}" if sd is not None else "")


def compare(better: str, better_values, worse: str, worse_values, *, chance: float | None = None,
            unit: str = "%", digits: int = 2, se: tuple[float, float] | None = None,
            limit: float = EXPLODED, se_source: str = "the test set's sampling alone (one evaluation each)") -> Verdict:
    """Does ``better`` score lower than ``worse`` (the claim), by more than the spread over seeds?

    ``*_values`` are one number per seed (an error in %, a response std, ...). ``chance``: the error of a net
    that has learned nothing, in the same unit; an arm within :data:`CHANCE_MARGIN` of it is not counted.
    ``se``: standard errors of the two means when they come from elsewhere (one evaluation each: pass
    :func:`binomial_se` of each); otherwise at least two seeds per arm are needed. ``se_source`` says in the
    verdict where those standard errors come from.
    """
    a, b = [float(x) for x in better_values], [float(x) for x in worse_values]
    if not a or not b:
        missing = better if not a else worse
        return Verdict(NOT_SHOWN, f"Not shown by this run: {missing} has no result.")
    for name, vals in ((better, a), (worse, b)):
        if diverged(vals, limit):
            return Verdict(NOT_SHOWN, f"Not shown by this run: {name} diverged ({', '.join(f'{v:.3g}' for v in vals)}).")
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    said = f"{better} {_fmt(ma, sa, unit, digits)} against {worse} {_fmt(mb, sb, unit, digits)}"
    if chance is not None:
        # every seed counts: one run that learned nothing is not averaged away by another that did
        near = [n for n, vals in ((better, a), (worse, b)) if any(near_chance(v, chance) for v in vals)]
        if near:
            return Verdict(NOT_SHOWN, f"Not shown by this run: {' and '.join(near)} "
                                      f"{'is' if len(near) == 1 else 'are'} within {CHANCE_MARGIN:g} points of chance "
                                      f"in at least one seed "
                                      f"({chance:.{digits}f}{unit}), so {'it has' if len(near) == 1 else 'they have'} "
                                      f"not learned enough to count ({said}).")
    gap = mb - ma
    if se is not None:
        interval, source = 2 * math.hypot(*se), se_source
    elif len(a) < 2 or len(b) < 2:
        one = [n for n, v in ((better, a), (worse, b)) if len(v) < 2]
        return Verdict(NOT_SHOWN, f"Not shown by this run: {' and '.join(one)} "
                                  f"{'has' if len(one) == 1 else 'have'} one seed, so the spread over seeds is not "
                                  f"measured ({said}; gap {gap:+.{digits}f}).", gap)
    else:
        interval, source = 2 * math.hypot(sa / math.sqrt(len(a)), sb / math.sqrt(len(b))), \
            f"twice the standard error over {len(a)} and {len(b)} seeds"
    points = "points" if unit.strip() == "%" else unit.strip()  # a difference of percentages is in points
    tail = f"{said}: gap {gap:+.{digits}f} {points}".rstrip() + f", interval ±{interval:.{digits}f} ({source})"
    if se is None and min(len(a), len(b)) < 4:
        tail += f"; with {min(len(a), len(b))} seeds that is a rough interval, not a 95% one"
    if gap > interval:
        return Verdict(SHOWN, f"Shown: {tail}.", gap, interval, tail)
    if gap < -interval:
        return Verdict(CONTRADICTED, f"Contradicted: {worse} is lower, not {better}; {tail}.", gap, interval, tail)
    return Verdict(NOT_SHOWN, f"Not shown by this run: the gap is inside its interval; {tail}.", gap, interval, tail)
