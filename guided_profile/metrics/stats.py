"""Intervals for per-example scores: what a reader needs to judge a difference between methods."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bootstrap_ci(values: list[float], *, confidence: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling examples with replacement).  The values
    are sorted first, so the same scores give the same interval whatever order a report reads them in."""
    data = np.sort(np.asarray(values, dtype=float))
    if data.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_bootstrap(a: list[float], b: list[float], *, confidence: float = 0.95, n_boot: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over paired examples, with a percentile bootstrap interval (pairs resampled together)."""
    diffs = _diffs(a, b)
    if diffs.size == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = bootstrap_ci(list(diffs), confidence=confidence, n_boot=n_boot, seed=seed)
    return float(diffs.mean()), lo, hi


def paired_permutation_pvalue(a: list[float], b: list[float], *, n_perm: int = 20000, seed: int = 0,
                              exact_up_to: int = 16) -> float:
    """Two-sided p-value of a paired permutation (sign-flip) test of mean(a - b) = 0.

    Under the null each pair's difference is as likely negated, so the p-value is the share of sign
    assignments whose |sum| is at least the observed one.  Exact (all 2^m assignments of the m
    non-zero differences) when m <= `exact_up_to`, else Monte Carlo with `n_perm` draws and the
    usual +1 correction, so it is never 0.
    """
    diffs = np.sort(_diffs(a, b))  # sorted: the Monte Carlo draw does not depend on the pairs' order
    diffs = diffs[diffs != 0]
    if diffs.size == 0:
        return 1.0
    observed = abs(diffs.sum()) - 1e-12
    m = diffs.size
    if m <= exact_up_to:
        signs = ((np.arange(2**m)[:, None] >> np.arange(m)) & 1) * 2 - 1
        return float((np.abs(signs @ diffs) >= observed).mean())
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_perm, 5000):  # in blocks: bounded memory for long inputs
        size = min(5000, n_perm - start)
        signs = rng.choice((-1.0, 1.0), size=(size, m))
        hits += int((np.abs(signs @ diffs) >= observed).sum())
    return (hits + 1) / (n_perm + 1)


def user_means(values: Sequence[float], users: Sequence[str]) -> list[float]:
    """Each user's mean of `values` (one value per example, `users[i]` its user), in order of first appearance.

    Paired statistics resample users, not examples: a dialogue persona's several turns are not independent
    draws, and counting them as such would make intervals too narrow and p-values too small.  With one
    example per user (preference, LaMP-7) the values come back unchanged.
    """
    if len(values) != len(users):
        raise ValueError(f"one user per value, got {len(values)} values and {len(users)} users")
    sums: dict[str, list[float]] = {}
    for value, user in zip(values, users, strict=True):
        sums.setdefault(user, []).append(value)
    return [float(np.mean(group)) for group in sums.values()]


def differing(a: Sequence[float], b: Sequence[float]) -> int:
    """How many pairs differ: the sign-flip test's p-value can be no smaller than 2 / 2^differing."""
    return int(np.count_nonzero(_diffs(list(a), list(b))))


def _diffs(a: list[float], b: list[float]) -> np.ndarray:
    if len(a) != len(b):
        raise ValueError(f"paired statistics need equal lengths, got {len(a)} and {len(b)}")
    return np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
