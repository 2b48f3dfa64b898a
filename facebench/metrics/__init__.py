"""Verification and identification metrics: pure numpy functions, frozen dataclasses out.

Nothing here imports h5py, click, rich, matplotlib or torch. Decision rule: accept when
``score >= threshold``. Everything derives from one sorted-score core,
:func:`count_at_thresholds`.
"""

from facebench.metrics.counts import (
    MetricInputError,
    ThresholdCounts,
    check_scores,
    count_at_thresholds,
)
from facebench.metrics.identification import (
    TPIR_RULES,
    IdentificationPoint,
    SearchResult,
    cmc,
    open_set_counts,
    search,
    search_scores,
    tpir_at_fpir,
)
from facebench.metrics.kfold import KFoldAccuracy, kfold_accuracy
from facebench.metrics.operating import TAR_RULES, OperatingPoint, tar_at_far
from facebench.metrics.roc import EqualErrorRate, RocCurve, auc, equal_error_rate, roc_curve

__all__ = [
    "TAR_RULES",
    "TPIR_RULES",
    "EqualErrorRate",
    "IdentificationPoint",
    "KFoldAccuracy",
    "MetricInputError",
    "OperatingPoint",
    "RocCurve",
    "SearchResult",
    "ThresholdCounts",
    "auc",
    "check_scores",
    "cmc",
    "count_at_thresholds",
    "equal_error_rate",
    "kfold_accuracy",
    "open_set_counts",
    "roc_curve",
    "search",
    "search_scores",
    "tar_at_far",
    "tpir_at_fpir",
]
