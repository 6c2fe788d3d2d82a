"""Small-sample statistics for comparing RL variants over seeds.

RL curves from 3-10 seeds spread widely (one seed at 0.0 and the next at 0.9 with the same
settings is common here), so a mean alone overstates what a benchmark shows. These helpers give a
percentile-bootstrap interval of a mean over seeds and a paired comparison of two variants run on
the same seeds (the seed fixes the env resets and network init, so differences per seed are the
fair unit). The statistics themselves are scipy's (``scipy.stats.bootstrap``, ``binomtest``,
``mannwhitneyu``); this module fixes the conventions the benchmarks report.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def bootstrap_mean_ci(x, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``x`` (resampling its entries with replacement).
    Deterministic for a given ``seed``. With one value the interval is that value."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_mean_ci: no values; expected at least one")
    if not np.isfinite(x).all():
        raise ValueError(f"bootstrap_mean_ci: non-finite values in {x.tolist()}; expected finite numbers")
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_mean_ci: level {level}; expected in (0, 1)")
    if np.all(x == x[0]):  # one value, or all equal: every resample has that mean
        return float(x[0]), float(x[0])
    res = stats.bootstrap((x,), np.mean, confidence_level=level, n_resamples=n_boot, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def sign_test_p(n_pos: int, n_neg: int) -> float:
    """Exact two-sided sign test: the chance of a split at least this uneven between ``n_pos`` and
    ``n_neg`` if either side were equally likely (ties are left out before calling)."""
    n = n_pos + n_neg
    if n == 0:
        return 1.0
    return float(stats.binomtest(n_pos, n, 0.5, alternative="two-sided").pvalue)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success rate ``k / n`` (sensible at 0 and n, unlike the normal one)."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval: {k} successes of {n}; expected 0 <= k <= n and n >= 1")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def auroc(scores, labels) -> float | None:
    """Area under the ROC curve of ``scores`` for boolean ``labels`` (the Mann-Whitney U over the
    number of pairs, ties counted half); None when only one class is present."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return None
    return float(stats.mannwhitneyu(pos, neg, alternative="two-sided").statistic / (len(pos) * len(neg)))


def paired_difference(a, b, level: float = 0.95, seed: int = 0) -> dict:
    """``a - b`` per seed (the same seeds in the same order): mean, bootstrap interval of the mean,
    how many seeds ``a`` is ahead, behind or level, and the sign test's p-value."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: {a.size} values against {b.size}; expected one per seed on both sides")
    d = a - b
    ahead, behind = int((d > 0).sum()), int((d < 0).sum())
    lo, hi = bootstrap_mean_ci(d, level, seed=seed)
    return {"mean": float(d.mean()), f"ci{round(level * 100)}": [lo, hi], "ahead": ahead, "behind": behind,
            "level": int(d.size - ahead - behind), "sign_test_p": sign_test_p(ahead, behind)}
