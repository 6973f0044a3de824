"""Intervals over seeds, as every study and the benchmark report them."""

from __future__ import annotations

import math
import statistics


def t_quantile(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t as student_t  # here, not at the top: scipy.stats takes ~1 s to import

    return float(student_t.ppf(0.975, df))


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the two-sided 95 % Student-t interval of the mean, ``n - 1`` degrees of
    freedom (the seeds are the samples; a paired difference is one value per seed); 0 for one value."""
    if not values:
        raise ValueError("an interval needs at least one value")
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
