"""Two vectors of bin counts in; their PSI, its p-value and the status of the distribution out.

**PSI.** Over the bins of two samples, PSI = Σ (a_i − e_i)·ln(a_i / e_i), with e the reference and
a the current shares of rows. A bin empty on both sides contributes nothing and is left out. A bin
empty on one side only would make the sum infinite, so it counts as half a row of that sample
(ε = 0.5 / n for a sample of n rows); shares are not renormalised afterwards.

**Significance.** Under no drift, PSI / (1/N + 1/M) is approximately chi-square with (B − 1)
degrees of freedom (Yurdakul 2018), N and M the reference and current row counts and B the number
of bins the reference populates (at least 2, so the degrees of freedom are at least 1). Small
samples have large PSI by chance alone: 10 equal bins, N = 10 000, M = 100 give PSI > 0.1 about a
third of the time. The approximation runs hot in the far tail for small M (simulated with 10 equal
bins and N = 24 000: at M = 200, p < 0.001 happens twice as often as it should; at M = 1 000, 1.1
times), which is why nothing is judged below `min_rows` = 300 rows by default: from there on, a
check of an unchanged population raises an alarm less often than `alpha`.

**Status.** Per feature, with thresholds `moderate` < `significant` and false-alarm rate `alpha`:

    fewer than min_rows current rows          -> insufficient_data (no PSI, no p-value)
    PSI >= moderate but p >= alpha / k        -> insufficient_data (large, but could be chance)
    PSI >= significant and p < alpha / k      -> significant
    PSI >= moderate    and p < alpha / k      -> moderate
    otherwise                                 -> stable

where k is the number of distributions checked together (features plus scored classes): the
Bonferroni split makes `alpha` the chance that a check of an unchanged population flags anything
at all, not the chance per feature. The reported `p_value` is the raw, per-feature one. A report's
status is the worst of its parts, in the order of `status.STATUSES`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from modelops.drift.status import Status, Thresholds


def psi(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """PSI between two vectors of bin counts; a bin empty on one side counts as half a row.

    >>> round(psi([40, 30, 30], [35, 25, 40]), 6)  # shares (0.4, 0.3, 0.3) and (0.35, 0.25, 0.4)
    0.044561
    """
    ref, cur = np.asarray(reference, np.float64), np.asarray(current, np.float64)
    if ref.shape != cur.shape or ref.ndim != 1:
        raise ValueError(f"need two count vectors of one length, got {ref.shape}, {cur.shape}")
    n, m = ref.sum(), cur.sum()
    if n <= 0 or m <= 0:
        raise ValueError("both samples need at least one row")
    keep = (ref > 0) | (cur > 0)
    e = np.where(ref > 0, ref, 0.5)[keep] / n
    a = np.where(cur > 0, cur, 0.5)[keep] / m
    return float(np.sum((a - e) * np.log(a / e)))


def degrees_of_freedom(reference: npt.ArrayLike) -> int:
    """Bins the reference populates, minus one (at least one)."""
    return max(int(np.count_nonzero(np.asarray(reference))) - 1, 1)


def p_value(value: float, n_reference: int, n_current: int, dof: int) -> float:
    """Chance of a PSI at least `value` between two samples of one population (chi-square approx.)."""
    # scipy.special takes longer to import than a million rows take to count: it is loaded when
    # the first p-value is asked for, so that counting (and `drift check`'s reading) starts sooner.
    from scipy.special import chdtrc

    statistic = value / (1.0 / n_reference + 1.0 / n_current)
    return float(chdtrc(dof, statistic))


def classify(value: float, p: float, thresholds: Thresholds, tests: int = 1) -> Status:
    """The status of one distribution with PSI `value` and p-value `p` (enough rows assumed);
    `tests` is k, the number of distributions checked together."""
    if value < thresholds.moderate:
        return "stable"
    if p >= thresholds.alpha / tests:
        return "insufficient_data"
    return "significant" if value >= thresholds.significant else "moderate"
