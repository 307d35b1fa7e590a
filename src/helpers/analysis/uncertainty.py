"""Intervals behind every verdict, and the verdict rule itself.

An estimate is read on several *units* (a fold of a run with one seed: its analysis set of clips). Its 95% interval
comes from a two-level bootstrap: units are drawn with replacement, then clips within each drawn unit, and the
statistic is averaged over the drawn units (Davison & Hinkley 1997, ch. 3.8). Contrasts (trained minus control)
use the same drawn clips for both sides, so the interval is that of the paired difference.

A verdict compares an interval with a criterion: *holds* when the whole interval is on the claimed side,
*does not hold* when the whole interval is on the other side, *inconclusive* when it straddles the criterion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Mapping, Sequence

import numpy as np

__all__ = ["HOLDS", "FAILS", "INCONCLUSIVE", "UNTESTABLE", "VERDICTS", "Interval", "bootstrap", "bootstrap_many",
           "judge", "judge_band", "combine"]

HOLDS, FAILS, INCONCLUSIVE, UNTESTABLE = "holds", "does not hold", "inconclusive", "not testable"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, UNTESTABLE)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval [low, high] (NaN everywhere when undefined)."""

    value: float
    low: float
    high: float

    @classmethod
    def undefined(cls) -> "Interval":
        return cls(float("nan"), float("nan"), float("nan"))

    @property
    def defined(self) -> bool:
        return bool(np.isfinite([self.value, self.low, self.high]).all())

    def format(self, digits: int = 3, signed: bool = False) -> str:
        if not self.defined:
            return "undefined"
        f = f"{{:{'+' if signed else ''}.{digits}f}}"
        return f"{f.format(self.value)} [{f.format(self.low)}, {f.format(self.high)}]"



def bootstrap_many(sizes: Sequence[int], statistic: Callable[[int, np.ndarray], Mapping[str, float]], *,
                   n_boot: int = 200, level: float = 0.95, seed: int = 0, resample_clips: bool = True,
                   bias_correct: bool = False) -> dict[str, Interval]:
    """Two-level bootstrap intervals of the means over units of several quantities computed together.

    `sizes[u]` is the number of clips of unit u; `statistic(u, idx)` returns {name: value} for the clips `idx` of
    unit u (with repeats when resampled), so a trained value, its control and their paired contrast are read on
    the same drawn clips. The point estimate uses every clip of every unit once. With one unit only clips are
    resampled; `resample_clips=False` resamples units only (a unit is then one number, e.g. a fold's UAR). A
    replicate that is NaN (too few distinct clips) is left out; with fewer than half left the interval is NaN.
    `bias_correct` shifts the percentile interval so that its median is the point estimate (for statistics such as
    CKA, which repeated clips push up).
    """
    sizes = [int(n) for n in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"bootstrap needs at least one unit with clips, got sizes={sizes}")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must be in (0, 1)")
    full = [dict(statistic(u, np.arange(n))) for u, n in enumerate(sizes)]
    names = list(full[0])
    point = {k: float(np.mean([f[k] for f in full])) for k in names}
    rng = np.random.default_rng(seed)
    reps = np.empty((n_boot, len(names)))
    for b in range(n_boot):
        units = rng.integers(0, len(sizes), len(sizes)) if len(sizes) > 1 else np.zeros(1, int)
        values = [statistic(int(u), rng.integers(0, sizes[u], sizes[u])) if resample_clips else full[int(u)]
                  for u in units]
        reps[b] = [np.mean([v[k] for v in values]) for k in names]
    tail = (1 - level) / 2 * 100
    out = {}
    for j, k in enumerate(names):
        r = reps[np.isfinite(reps[:, j]), j]
        if not np.isfinite(point[k]):
            out[k] = Interval.undefined()
        elif len(r) < max(n_boot // 2, 1):
            out[k] = Interval(point[k], float("nan"), float("nan"))
        else:
            low, high = np.percentile(r, [tail, 100 - tail])
            shift = point[k] - float(np.median(r)) if bias_correct else 0.0
            out[k] = Interval(point[k], float(low + shift), float(high + shift))
    return out


def bootstrap(sizes: Sequence[int], statistic: Callable[[int, np.ndarray], float], **options) -> Interval:
    """`bootstrap_many` for one quantity: `statistic(unit, clip_indices)` returns a number."""
    return bootstrap_many(sizes, lambda u, idx: {"x": statistic(u, idx)}, **options)["x"]


Side = Literal["above", "below"]


def judge(interval: Interval | None, threshold: float, side: Side = "above") -> str:
    """Verdict for "the quantity is {above|below} `threshold`" read on its interval (see the module docstring)."""
    if side not in ("above", "below"):
        raise ValueError(f"side={side!r}; choose 'above' or 'below'")
    if interval is None or not interval.defined:
        return UNTESTABLE
    low, high = (interval.low, interval.high) if side == "above" else (-interval.high, -interval.low)
    t = threshold if side == "above" else -threshold
    if low > t:
        return HOLDS
    if high <= t:
        return FAILS
    return INCONCLUSIVE


def judge_band(interval: Interval | None, low: float, high: float) -> str:
    """Verdict for "the quantity lies in [low, high]": holds when the interval is inside, fails when it is
    outside, inconclusive when it overlaps an edge."""
    if interval is None or not interval.defined:
        return UNTESTABLE
    if interval.low >= low and interval.high <= high:
        return HOLDS
    if interval.high < low or interval.low > high:
        return FAILS
    return INCONCLUSIVE


def combine(*verdicts: str) -> str:
    """A claim made of several conditions: fails if any fails, holds only if all hold, else inconclusive."""
    if not verdicts:
        raise ValueError("combine needs at least one verdict")
    if UNTESTABLE in verdicts:
        return UNTESTABLE
    if FAILS in verdicts:
        return FAILS
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return INCONCLUSIVE
