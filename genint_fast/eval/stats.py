"""Summary statistics of results over seeds (one owner: the demo's tables, the generated-only
experiment)."""
from __future__ import annotations

import math
import statistics

__all__ = ["ci95"]


def ci95(values) -> float:
    """Half-width of the 95% Student-t interval of the mean (nan for fewer than two values)."""
    values = [float(v) for v in values]
    if len(values) < 2:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))
