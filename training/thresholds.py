"""Risk thresholds with a confidence guarantee, per domain, and how they carry across domains.

The ``medium`` cut-off must catch 95% of cancers. Set at the empirical 5th percentile of
validation cancers' scores, it catches 95% of *those* cancers and, on new ones, anything
from about 88% to 99% (issue 22: the old cut-off was the 3rd-lowest of 58 scores, and the
PAD test split then got 0.35 specificity where its ROC allowed 0.53). Here it is a
distribution-free lower confidence bound instead: the k-th lowest cancer score, with the
largest k for which P(Binomial(n, 0.05) >= k) >= ``confidence``. With probability at least
``confidence`` over the draw of the validation cancers, the true sensitivity at that
cut-off is then at least 95% (order statistics of the cancer-score distribution; no model
of its shape). With fewer than 59 cancers no order statistic reaches 95% confidence:
the lowest score is used and the confidence it does reach is reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import binom

from training.metrics import sensitivity_specificity

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class SensitivityBound:
    threshold: float
    rank: int  # the k-th lowest cancer score (1-based)
    cancers: int
    confidence: float  # P(true sensitivity at threshold >= target), at least

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sensitivity_lower_bound_threshold(
    cancer_scores: npt.ArrayLike, target: float = 0.95, confidence: float = 0.95
) -> SensitivityBound:
    """The highest cut-off whose sensitivity is >= ``target`` with ``confidence``."""
    pos = np.sort(np.asarray(cancer_scores, np.float64))
    n = len(pos)
    if n == 0:
        raise ValueError("no cancer scores")
    # P(X_(k) <= q) = P(Binomial(n, 1 - target) >= k) for q the true (1-target)-quantile.
    ks = np.arange(1, n + 1)
    reached = binom.sf(ks - 1, n, 1.0 - target)
    ok = ks[reached >= confidence]
    k = int(ok.max()) if len(ok) else 1
    # Just under the k-th score, so that cancer is flagged however the same photo's score
    # is rounded on another run (the pipeline's float noise is ~1e-7; k = 1 on PAD put the
    # lowest validation cancer exactly on the cut-off and a rerun read it as missed).
    return SensitivityBound(float(pos[k - 1]) * (1 - 1e-5), k, n, float(reached[k - 1]))


def cross_domain_table(
    domains: dict[str, tuple[BoolArray, FloatArray]], target: float = 0.95
) -> dict[str, Any]:
    """Each domain's own bound, and every domain's sensitivity/specificity at each bound.

    The answer to "does one threshold serve phone, clinical and dermoscopic photos":
    the diagonal is each domain at its own cut-off, the rows say what another domain's
    cut-off would do to it.
    """
    bounds = {
        d: sensitivity_lower_bound_threshold(score[y], target) for d, (y, score) in domains.items()
    }
    table: dict[str, dict[str, dict[str, float]]] = {}
    for d, (y, score) in domains.items():
        table[d] = {}
        for source, b in bounds.items():
            sens, spec = sensitivity_specificity(y, score, b.threshold)
            table[d][source] = {"sensitivity": sens, "specificity": spec}
    return {"bounds": {d: b.to_dict() for d, b in bounds.items()}, "at_threshold_of": table}


def shared_threshold(bounds: dict[str, SensitivityBound], domains: list[str]) -> float:
    """One cut-off for the listed domains: the lowest of their bounds, so each keeps its
    guarantee (the bot cannot tell a phone photo from a clinic's close-up for sure)."""
    return min(bounds[d].threshold for d in domains)


HIGH_SPECIFICITY = 0.90


def risk_cutoffs(
    answered: dict[str, tuple[BoolArray, FloatArray]],
    medium_domains: list[str],
    target: float = 0.95,
    high_specificity: float = HIGH_SPECIFICITY,
    pooled: bool = False,
) -> tuple[float, float, dict[str, SensitivityBound]]:
    """``medium``: the lowest of the listed domains' lower confidence bounds for ``target``
    sensitivity (or, ``pooled``, one bound over their cancers together: the alternative
    :mod:`training.threshold_crossfit` weighs, not shipped); ``high``: the cut-off leaving
    ``high_specificity`` of their non-cancers below it, pooled, never under ``medium``.
    ``answered`` holds (is_cancer, score) of the photos the gate answers, per domain."""
    bounds = {d: sensitivity_lower_bound_threshold(s[y], target) for d, (y, s) in answered.items()}
    if pooled:
        cancers = np.concatenate([answered[d][1][answered[d][0]] for d in medium_domains])
        medium = sensitivity_lower_bound_threshold(cancers, target).threshold
    else:
        medium = shared_threshold(bounds, medium_domains)
    benign = np.concatenate([answered[d][1][~answered[d][0]] for d in medium_domains])
    high = max(float(np.quantile(benign, high_specificity)), medium)
    return medium, high, bounds
