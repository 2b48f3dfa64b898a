"""Reports of one protocol side by side, with paired bootstrap intervals of their differences.

The library call behind ``facebench compare``. The first report is the reference; every other
report's headline numbers are differenced against it, and each difference gets a paired
percentile bootstrap interval computed from the reports' per-unit files (``x.scores.npz``,
written beside ``x.json`` by ``facebench verify --json``).

Headline numbers
----------------
Fold protocols (LFW, YTF, generic pairs): the k-fold accuracy (mean over folds; its std with
ddof=1 and standard error std/sqrt(k) are shown, not differenced), AUC, EER and TAR at every
FAR target common to all reports. Split protocols (IJB-A/B/C): the mean over splits of TAR at
every common FAR target and of the AUC, and with 1:N the mean over splits of CMC rank 1, 5, 10
and of TPIR at every common FPIR target (a split's 1:N number is the mean over its galleries
when it has several, as in the report). Every number is a fraction in [0, 1].

Paired bootstrap (the same resampled units for every report)
------------------------------------------------------------
A paired bootstrap needs the same units in the same order in every report: the per-unit
files must hold identical ``left``, ``right``, ``is_same`` and ``fold`` (fold protocols) or
``split``, ``left``, ``right``, ``is_same`` and ``probe_split``, ``probe_gallery``,
``probe_template``, ``probe_mated`` (split protocols); anything else is refused.

Fold protocols, unit = pair. The pairs are cut into strata by (fold, is_same); each resample
draws, in every stratum, as many pairs as it holds, with replacement. The protocol fixes the
number of genuine and impostor pairs of each fold (LFW 300 + 300, YTF 250 + 250), so the
resample keeps every fold's size and class balance, and the FAR budget
``floor(target x n_impostor)`` of TAR at a FAR does not move between resamples. In every
resample the fold thresholds are refit (facebench's k-fold rule, exactly
:func:`facebench.metrics.kfold_accuracy` applied to the resampled scores, labels and folds),
so the interval includes the noise of the threshold choice; AUC, EER and TAR at FAR are
recomputed on the pooled resample (exactly :func:`facebench.metrics.count_at_thresholds` and
the metric functions on the resampled pairs).

Split protocols, unit = template (1:1) and probe template (1:N); splits are never mixed.
1:1, a two-way template bootstrap: the templates of a split (every id that appears in its
comparisons, left or right) are drawn as many times as there are, with replacement; a
comparison then counts ``w(left) x w(right)`` times, ``w`` being how often each of its two
templates was drawn, so the correlation of all comparisons that share a template is carried
into the resample (a pair-level bootstrap would treat them as independent and give intervals
that are too narrow). 1:N: the probe templates of a split are drawn with replacement within
strata of probes with the same mated status in every gallery of the split (IJB-A has one
gallery; in IJB-B/C each probe is mated in one of the two), each stratum keeping its size; a
probe drawn ``w`` times counts ``w`` times in every gallery's search (its rank and scores
against the gallery do not depend on the other probes, so nothing is searched again). Each
split's metric is recomputed on its resample, then averaged over splits (and galleries) as
in the report.

Random numbers: ``numpy.random.default_rng(seed)``; resamples ``r = 0 .. R-1`` are drawn in
order; within a resample the strata are visited in a fixed order (fold protocols: folds
ascending, impostors before genuine pairs; split protocols: splits ascending, in each the 1:1
templates (ids ascending) then the 1:N probe strata (mated patterns ascending, in each the
probe ids ascending)), and a stratum of ``n`` units draws ``rng.integers(0, n, size=n)``,
indices into its units in that order. The results do not depend on how resamples are batched.

Interval: the percentile interval; with ``c`` the confidence and ``d`` the R bootstrap
differences (report minus reference), ``[quantile(d, (1 - c) / 2), quantile(d, (1 + c) / 2)]``
(numpy's default linear interpolation). The point estimate is the difference of the
full-sample numbers (exactly what the two reports say). A difference is "within noise" when
its interval contains 0. Two identical reports give exactly [0, 0].

Cost
----
Resamples are weights (how many times each unit is drawn), evaluated in batches without
re-sorting: genuine and impostor scores are sorted once per report, and every number is a
vectorized pass over the weights that equals the library function on the repeated units bit
for bit (the ``exact`` TAR/TPIR rule, AUC, EER, k-fold accuracy; other TAR rules call the
library per resample). The cost is O(resamples x units) per report: on 2 CPU cores 1,000
resamples take about 1 s per report on LFW (6,000 pairs, thresholds refit in each), about
3 s per report on IJB-A (10 splits of about 11,700 comparisons); IJB-C (15.7 million
comparisons) takes about 0.4 s per resample and report, so use fewer resamples there.

Decisions
---------
- Reports of different protocols, or of one protocol read from different files
  (``protocol_sha256``), or made with different TAR/TPIR rules, are refused; so are reports
  made with ``--compat`` (the bootstrap refits facebench's k-fold rule only).
- FAR (and FPIR) targets: only the targets common to all reports are compared; the others are
  named in ``notes``.
- One report: its headline only, no differences, and its per-unit file is not needed.
- A per-unit file that does not reproduce its report's headline numbers (a stale or foreign
  ``.scores.npz``) is refused.

The JSON document (:meth:`Comparison.to_dict`)
----------------------------------------------
``schema``: ``"facebench-compare"``, ``schema_version``, ``protocol``, ``protocol_sha256``,
``kind`` (``"fold"`` or ``"split"``), ``settings`` {resamples, seed, confidence, interval,
unit, scheme, rng, reference}, ``metrics`` [{key, label, higher_is_better}], ``reports``
[{path, label, model, store_content_sha256, headline {key: value}, spread {key: {std,
stderr}}}] (the first is the reference), ``differences`` [{report (index into ``reports``),
label, metric, estimate, interval [low, high], std_error (ddof=1 over the resamples),
within_noise}], ``notes`` [...]. Values are fractions (not percent).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.errors import FacebenchError, ReportError
from facebench.fileio import check_writable, write_text_atomic
from facebench.metrics import (
    TAR_RULES,
    TPIR_RULES,
    SearchResult,
    auc,
    cmc,
    count_at_thresholds,
    equal_error_rate,
    kfold_accuracy,
    tar_at_far,
    tpir_at_fpir,
)
from facebench.metrics.counts import ThresholdCounts, check_scores
from facebench.report import jsonable, load_report, scores_path_for

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Stats = dict[str, FloatArray]

COMPARE_SCHEMA_VERSION = 1
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
DEFAULT_CONFIDENCE = 0.95
CMC_RANKS = (1, 5, 10)
CHUNK_ELEMENTS = 1 << 21
"""Resamples are evaluated in batches of about this many (resample x unit) weights."""

FOLD_UNITS = ("left", "right", "is_same", "fold")
SPLIT_UNITS = ("split", "left", "right", "is_same")
PROBE_UNITS = ("probe_split", "probe_gallery", "probe_template", "probe_mated")
PROBE_VALUES = ("probe_mate_rank", "probe_mate_score", "probe_top_score")
FOLD_SCHEME = (
    "pairs drawn with replacement within each (fold, is_same) stratum, every stratum keeping"
    " its size; fold thresholds refit in every resample (facebench's k-fold rule); AUC, EER"
    " and TAR at FAR recomputed on the pooled resample"
)
SPLIT_SCHEME = (
    "1:1: within each split its templates drawn with replacement, a comparison counting"
    " w(left) x w(right) times (two-way template bootstrap); 1:N: within each split the probe"
    " templates drawn with replacement within strata of equal mated status in every gallery,"
    " a probe counting as often as drawn in every gallery's search; each split's metric"
    " recomputed, then averaged over galleries and splits as in the report"
)
RNG_RULE = (
    "numpy.random.default_rng(seed); resamples in order; in each, strata in order (folds"
    " ascending, impostors then genuine; or splits ascending, 1:1 templates by id then 1:N"
    " probe strata by mated pattern, probes by id); a stratum of n units draws"
    " rng.integers(0, n, size=n)"
)
INTERVAL_RULE = "percentile: quantiles (1-c)/2 and (1+c)/2 of the bootstrap differences"


# ------------------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class Metric:
    """One headline number.

    Attributes
    ----------
    key : str
        Its name in the JSON (``accuracy``, ``auc``, ``eer``, ``tar_at_far:0.001``,
        ``cmc:1``, ``tpir_at_fpir:0.01``).
    label : str
        Its name in tables.
    higher_is_better : bool
        False for the EER only.
    decimals : int
        Decimals of its percentage in tables.
    """

    key: str
    label: str
    higher_is_better: bool = True
    decimals: int = 2


def tar_key(far_target: float) -> str:
    """The metric key of TAR at a FAR target."""
    return f"tar_at_far:{far_target:g}"


def tpir_key(fpir_target: float) -> str:
    """The metric key of TPIR at an FPIR target."""
    return f"tpir_at_fpir:{fpir_target:g}"


def cmc_key(rank: int) -> str:
    """The metric key of the CMC at a rank."""
    return f"cmc:{rank}"


# ------------------------------------------------------------------------------ engines


def _allowed(far_target: float, n_impostor: IntArray) -> IntArray:
    """The FAR budget of the ``exact`` rule for each row, as
    :func:`facebench.metrics.operating.tar_exact`: ``floor(target x n_impostor)`` with the
    target's decimal value taken exactly."""
    frac = Fraction(repr(float(far_target)))
    if frac.numerator * int(n_impostor.max(initial=0)) < 2**62:
        return (n_impostor * frac.numerator) // frac.denominator
    return np.array([math.floor(frac * int(i)) for i in n_impostor], dtype=np.int64)


class _Groups:
    """Units sorted by score, grouped by distinct score (ties share a group)."""

    def __init__(self, scores: FloatArray) -> None:
        self.order: IntArray = np.argsort(scores, kind="stable").astype(np.int64)
        ordered = scores[self.order]
        first = np.concatenate(([True], ordered[1:] != ordered[:-1]))[: ordered.size]
        self.values: FloatArray = ordered[first]
        self.starts: IntArray | None = (
            None if bool(first.all()) else np.flatnonzero(first).astype(np.int64)
        )

    def sums(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Column sums per group of ``x`` (rows x units in sorted order), in its dtype."""
        if self.starts is None or x.shape[1] == 0:
            return x
        return np.add.reduceat(x, self.starts, axis=1)


def _below(x: IntArray) -> IntArray:
    """``out[:, j]`` = the sum of ``x[:, :j]`` (shape (c, m + 1)); forward sums are fast."""
    out = np.zeros((x.shape[0], x.shape[1] + 1), dtype=np.int64)
    np.cumsum(x, axis=1, out=out[:, 1:])
    return out


class _Sides:
    """The counts core in weighted form: the accept side ("genuine") and the impostor units,
    each sorted ascending and grouped by distinct score, as :func:`count_at_thresholds`
    sorts them.

    Parameters
    ----------
    scores : ndarray of float64, shape (n,)
    genuine : ndarray of bool, shape (n,)
    """

    def __init__(self, scores: FloatArray, genuine: BoolArray) -> None:
        gen_units, imp_units = np.flatnonzero(genuine), np.flatnonzero(~genuine)
        self.gen, self.imp = _Groups(scores[gen_units]), _Groups(scores[imp_units])
        self.gen_units: IntArray = gen_units[self.gen.order]
        self.imp_units: IntArray = imp_units[self.imp.order]
        # impostor groups below / at or below each genuine score, and genuine groups at or
        # below each impostor score
        self.imp_lt = np.searchsorted(self.imp.values, self.gen.values, side="left")
        self.imp_le = np.searchsorted(self.imp.values, self.gen.values, side="right")
        self.gen_le = np.searchsorted(self.gen.values, self.imp.values, side="right")

    def rates(
        self,
        w_gen: IntArray,
        w_imp: IntArray,
        n_genuine: IntArray | None,
        targets: Sequence[float],
        rule: str,
        rules: dict[str, Callable[[ThresholdCounts, float], Any]],
        with_auc: bool,
        where: str,
    ) -> tuple[list[FloatArray], FloatArray | None]:
        """TAR (or TPIR) at each target and optionally the AUC of weighted resamples.

        Parameters
        ----------
        w_gen, w_imp : ndarray of int, shapes (c, n_gen) and (c, n_imp)
            Weights of the genuine and impostor units, in ``gen_units`` / ``imp_units``
            order.
        n_genuine : ndarray of int64, shape (c,), or None
            The genuine total when it exceeds ``w_gen.sum(1)`` (1:N: mated probes not at
            rank 1 count but are never accepted); None for ``w_gen.sum(1)``.

        Returns
        -------
        rates : list of ndarray of float64, shape (c,)
            The ``exact`` rule: with ``v*`` the highest impostor score whose impostors at or
            above it exceed the budget ``floor(target x n_impostor)``, the genuine weight
            above ``v*`` over the genuine total -- :func:`tar_exact`'s TAR (the largest TAR
            whose FAR is within the budget). Other rules call the library row by row.
        auc : ndarray of float64, shape (c,), or None
            ``sum over genuine g of w_g (impostors below g + impostors at or below g)``
            over ``2 x genuine x impostors``, exactly :func:`auc`'s integer sum.
        """
        gen, imp = self.gen.sums(w_gen), self.imp.sums(w_imp)
        gen_below, imp_below = _below(gen), _below(imp)
        n_acc, n_imp = gen_below[:, -1], imp_below[:, -1]
        n_gen = n_acc if n_genuine is None else n_genuine
        empty = np.flatnonzero((n_gen == 0) | (n_imp == 0))
        if empty.size:
            r = int(empty[0])
            raise FacebenchError(
                f"Expected genuine and impostor units in every bootstrap resample, but"
                f" resample {r}{where} has {int(n_gen[r])} genuine and {int(n_imp[r])}"
                " impostor units: too few units for this bootstrap"
            )
        c, m_imp = imp.shape
        rows = np.arange(c)
        rates = []
        if rule == "exact":
            # rows of imp_below are non-decreasing: offset row r by r x (max + 1) and one
            # binary search over the flattened array counts per row
            stride = int(n_imp.max()) + 1
            keys = (imp_below[:, :m_imp] + (rows * stride)[:, None]).ravel()
            for target in targets:
                need = np.maximum(n_imp - _allowed(target, n_imp), 0)
                found = np.searchsorted(keys, rows * stride + need, side="left")
                v_star = found - rows * m_imp - 1  # -1: every score may be accepted
                at_or_below = np.where(v_star >= 0, self.gen_le[np.maximum(v_star, 0)], 0)
                rates.append((n_acc - gen_below[rows, at_or_below]) / n_gen)
        else:
            for target in targets:
                rates.append(
                    np.array(
                        [
                            self._rate_row(gen[r], imp[r], int(n_gen[r]), target, rules[rule])
                            for r in range(c)
                        ],
                        dtype=np.float64,
                    )
                )
        area = None
        if with_auc:
            twice = np.einsum(
                "ij,ij->i", gen, imp_below[:, self.imp_lt] + imp_below[:, self.imp_le]
            )
            area = twice / (2 * n_gen * n_imp)
        return rates, area

    def _rate_row(
        self,
        gen: IntArray,
        imp: IntArray,
        n_genuine: int,
        target: float,
        rule: Callable[[ThresholdCounts, float], Any],
    ) -> float:
        """A library rule on one resample's repeated scores (the ``count_at_thresholds`` core)."""
        if not gen.any():  # 1:N with no mate at rank 1: nothing is ever identified
            return 0.0
        scores = np.concatenate((np.repeat(self.gen.values, gen), np.repeat(self.imp.values, imp)))
        counts = count_at_thresholds(scores, np.arange(scores.size) < gen.sum())
        return float(rule(dataclasses.replace(counts, n_genuine=n_genuine), target).tar)


def _eer(gen: IntArray, imp: IntArray) -> FloatArray:
    """:func:`equal_error_rate` of weighted resamples, from weights per distinct score
    (shape (c, m), ascending scores; both classes merged into the same groups)."""
    gen_below, imp_below = _below(gen), _below(imp)
    n_gen, n_imp = gen_below[:, -1:], imp_below[:, -1:]
    # the library's arrays, from the strictest threshold: accepted = total - below, reversed
    far = (n_imp - imp_below[:, ::-1]) / n_imp
    frr = 1.0 - (n_gen - gen_below[:, ::-1]) / n_gen
    d = far - frr
    rows = np.arange(gen.shape[0])
    i = np.argmax(d >= 0.0, axis=1)  # d[:, 0] == -1 (nothing accepted), so i >= 1
    d_i, d_prev = d[rows, i], d[rows, i - 1]
    lam = -d_prev / np.where(d_i == d_prev, 1.0, d_i - d_prev)
    far_i, far_prev = far[rows, i], far[rows, i - 1]
    return np.where(d_i == 0.0, far_i, far_prev + lam * (far_i - far_prev))


class VerificationEngine:
    """AUC and TAR at FAR of weighted resamples of one set of scored pairs.

    Parameters
    ----------
    scores : array of float, shape (n,)
    is_same : array of bool, shape (n,)
    far_targets : sequence of float
    tar_rule : str
        A key of :data:`facebench.metrics.TAR_RULES`.
    """

    def __init__(
        self,
        scores: npt.ArrayLike,
        is_same: npt.ArrayLike,
        far_targets: Sequence[float],
        tar_rule: str = "exact",
    ) -> None:
        s, y = check_scores(scores, is_same)
        self.scores, self.is_same = s, y
        self.far_targets = tuple(float(t) for t in far_targets)
        self.tar_rule = tar_rule
        self.sides = _Sides(s, y)

    def point(self) -> dict[str, float]:
        """The full-sample numbers, from the library functions."""
        counts = count_at_thresholds(self.scores, self.is_same)
        out = {"auc": auc(counts)}
        for p in tar_at_far(counts, self.far_targets, self.tar_rule):
            out[tar_key(p.far_target)] = p.tar
        return out

    def statistics(self, weights: npt.NDArray[np.int64], where: str = "") -> Stats:
        """The numbers of each resample.

        Parameters
        ----------
        weights : array of int, shape (c, n)
            Row ``r`` gives how many times each pair (in input order) is in resample ``r``.
        where : str
            Names the data in errors.

        Returns
        -------
        dict of str to ndarray of float64, shape (c,)
            ``auc`` and ``tar_at_far:<target>``: exactly what :func:`count_at_thresholds`,
            :func:`auc` and :func:`tar_at_far` give on the pairs repeated by their weights.
        """
        w = np.asarray(weights).astype(np.int64, copy=False)
        return self._pooled(w[:, self.sides.gen_units], w[:, self.sides.imp_units], where)

    def template_statistics(
        self, template_weights: IntArray, left: IntArray, right: IntArray, where: str = ""
    ) -> Stats:
        """As :meth:`statistics` with pair weights ``w[left] x w[right]`` (template indices
        of each pair), gathered straight into the sorted order."""
        g, i = self.sides.gen_units, self.sides.imp_units
        tw = template_weights
        return self._pooled(
            tw[:, left[g]] * tw[:, right[g]], tw[:, left[i]] * tw[:, right[i]], where
        )

    def _pooled(self, w_gen: IntArray, w_imp: IntArray, where: str) -> Stats:
        tars, area = self.sides.rates(
            w_gen, w_imp, None, self.far_targets, self.tar_rule, TAR_RULES, True, where
        )
        assert area is not None
        out = {"auc": area}
        out.update({tar_key(t): v for t, v in zip(self.far_targets, tars, strict=True)})
        return out


def _has_training(
    w: npt.NDArray[np.integer[Any]],
    train: BoolArray,
    full: BoolArray | None,
    r: IntArray,
    j: IntArray,
) -> BoolArray:
    """Whether group ``j`` of resample ``r`` holds training pairs (``full``: with ties)."""
    if full is not None:
        return full[r, j]
    return (w[r, j] > 0) & train[j]


class FoldEngine(VerificationEngine):
    """k-fold accuracy (thresholds refit) plus the pooled numbers of weighted resamples.

    Parameters
    ----------
    scores, is_same, far_targets, tar_rule
        As :class:`VerificationEngine`.
    folds : array of int, shape (n,)
        The fold of each pair.
    """

    def __init__(
        self,
        scores: npt.ArrayLike,
        is_same: npt.ArrayLike,
        folds: npt.ArrayLike,
        far_targets: Sequence[float],
        tar_rule: str = "exact",
    ) -> None:
        super().__init__(scores, is_same, far_targets, tar_rule)
        self.groups = _Groups(self.scores)
        self.sorted_scores = self.scores[self.groups.order]
        self.sorted_same = self.is_same[self.groups.order]
        self.folds = np.asarray(folds)
        if self.folds.shape != self.scores.shape or not np.issubdtype(self.folds.dtype, np.integer):
            raise FacebenchError(
                f"Expected integer folds of shape {self.scores.shape}, but got dtype"
                f" {self.folds.dtype} and shape {self.folds.shape}"
            )
        self.fold_ids = np.unique(self.folds)
        self.sorted_folds = self.folds[self.groups.order]

    def point(self) -> dict[str, float]:
        """The full-sample numbers, from the library functions."""
        out = {
            "accuracy": kfold_accuracy(self.scores, self.is_same, self.folds).mean,
            "eer": equal_error_rate(count_at_thresholds(self.scores, self.is_same)).eer,
        }
        out.update(super().point())
        return out

    def statistics(self, weights: npt.NDArray[np.int64], where: str = "") -> Stats:
        """The numbers of each resample.

        Parameters
        ----------
        weights : array of int, shape (c, n)
            Row ``r`` gives how many times each pair (in input order) is in resample ``r``.

        Returns
        -------
        dict of str to ndarray of float64, shape (c,)
            As :meth:`VerificationEngine.statistics`, plus ``eer`` (exactly
            :func:`equal_error_rate`) and ``accuracy``: exactly
            ``kfold_accuracy(scores[idx], is_same[idx], folds[idx]).mean`` for the pairs
            ``idx`` of each resample. For each fold, every candidate of facebench's rule is
            scored at once: the candidate that accepts the groups from ``j`` up is correct on
            the training genuine pairs at or above ``j`` plus the training impostors below;
            the tied best candidates' median (the lower middle) is taken, its threshold is
            the midpoint between its score and the next lower training score (``-inf`` when
            none, ``+inf`` for the accept-nothing candidate), and the held-out pairs of the
            fold are scored against it.
        """
        w = np.asarray(weights).astype(np.int64, copy=False)
        out = super().statistics(w, where)
        ws = w[:, self.groups.order]  # both classes in one sorted order
        out["eer"] = _eer(
            self.groups.sums(ws * self.sorted_same), self.groups.sums(ws * ~self.sorted_same)
        )
        out["accuracy"] = self._kfold(ws)
        return out

    def _kfold(self, ws: npt.NDArray[np.int64]) -> FloatArray:
        """Mean k-fold accuracy of each row of weights (sorted order); every fold must keep
        a pair in every row (the stratified resamples keep all of them)."""
        c = ws.shape[0]
        values = self.groups.values
        m = values.size
        # counts never exceed the row's total weight: int32 halves the memory traffic
        w: npt.NDArray[np.integer[Any]] = (
            ws.astype(np.int32) if int(ws.sum(axis=1).max()) < 2**31 - 1 else ws
        )
        n_gen_all = (w * self.sorted_same).sum(axis=1, dtype=np.int64)
        accuracies = np.empty((c, self.fold_ids.size), dtype=np.float64)
        for col, fold in enumerate(self.fold_ids):
            held = self.sorted_folds == fold
            sign = np.where(held, 0, np.where(self.sorted_same, -1, 1)).astype(w.dtype)
            d = self.groups.sums(w * sign)  # training impostors minus genuine, per group
            train = ~held
            full = None if self.groups.starts is None else self.groups.sums(w * train) > 0
            test_w = w[:, held]
            test_s, test_y = self.sorted_scores[held], self.sorted_same[held]
            n_gen_train = n_gen_all - (test_w * test_y).sum(axis=1, dtype=np.int64)
            # correct[:, j]: training pairs the candidate "accept groups >= j" gets right.
            # A group without training pairs is no candidate; its value repeats the next
            # group's, so the maximum is unchanged and only the ties are filtered below.
            correct = np.empty(d.shape, dtype=w.dtype)
            correct[:, 0] = 0
            np.cumsum(d[:, :-1], axis=1, dtype=w.dtype, out=correct[:, 1:])
            correct += n_gen_train.astype(w.dtype)[:, None]
            accept_none = correct[:, -1] + d[:, -1]
            best = np.maximum(correct.max(axis=1), accept_none)
            tie_rows, tie_cols = np.nonzero(correct == best[:, None])
            real = _has_training(w, train, full, tie_rows, tie_cols)
            tie_rows, tie_cols = tie_rows[real], tie_cols[real]
            n_tied_groups = np.bincount(tie_rows, minlength=c)
            pick = (n_tied_groups + (accept_none == best) - 1) // 2  # the lower middle
            first = np.concatenate(([0], np.cumsum(n_tied_groups)[:-1]))
            in_groups = pick < n_tied_groups
            pos = np.full(c, m, dtype=np.int64)
            pos[in_groups] = tie_cols[(first + pick)[in_groups]]
            prev = pos - 1
            rows = np.arange(c)
            while True:  # the next lower training score: usually a step or two down
                step = (prev >= 0) & (pos < m)
                step[step] = ~_has_training(w, train, full, rows[step], prev[step])
                if not step.any():
                    break
                prev[step] -= 1
            low = values[np.clip(prev, 0, m - 1)]
            high = values[np.clip(pos, 0, m - 1)]
            threshold = np.where(pos == m, np.inf, np.where(prev < 0, -np.inf, (low + high) / 2.0))
            right = (test_s[None, :] >= threshold[:, None]) == test_y[None, :]
            n_right = (test_w * right).sum(axis=1, dtype=np.int64)
            accuracies[:, col] = n_right / test_w.sum(axis=1, dtype=np.int64)
        return accuracies.mean(axis=1)


class IdentificationEngine:
    """CMC at ranks and TPIR at FPIR of weighted resamples of one gallery's searches.

    Parameters
    ----------
    mated, mate_rank, mate_score, top_score : arrays, shape (q,)
        Per probe, as :class:`facebench.metrics.SearchResult`.
    ranks : sequence of int
    fpir_targets : sequence of float
    tpir_rule : str
        A key of :data:`facebench.metrics.TPIR_RULES`.
    """

    def __init__(
        self,
        mated: npt.ArrayLike,
        mate_rank: npt.ArrayLike,
        mate_score: npt.ArrayLike,
        top_score: npt.ArrayLike,
        ranks: Sequence[int],
        fpir_targets: Sequence[float],
        tpir_rule: str = "exact",
    ) -> None:
        self.mated = np.asarray(mated, dtype=bool)
        self.mate_rank = np.asarray(mate_rank, dtype=np.int64)
        self.mate_score = np.asarray(mate_score, dtype=np.float64)
        self.top_score = np.asarray(top_score, dtype=np.float64)
        self.ranks = tuple(int(r) for r in ranks)
        self.fpir_targets = tuple(float(t) for t in fpir_targets)
        self.tpir_rule = tpir_rule
        # the counts core of TPIR: mated probes at rank 1 (their mate score) are the genuine
        # side, non-mated probes (their top score) the impostors; see open_set_counts
        self.kept = np.flatnonzero((self.mated & (self.mate_rank == 1)) | ~self.mated)
        kept_scores = np.where(self.mated, self.mate_score, self.top_score)[self.kept]
        self.sides = _Sides(kept_scores, self.mated[self.kept])

    def point(self) -> dict[str, float]:
        """The full-sample numbers, from the library functions."""
        q = self.mated.size
        result = SearchResult(
            probe_subjects=np.zeros(q, dtype=np.int64),
            mated=self.mated,
            mate_rank=self.mate_rank,
            mate_score=self.mate_score,
            top_score=self.top_score,
            top_subject=np.zeros(q, dtype=np.int64),
            n_gallery=0,
        )
        out = {cmc_key(r): v for r, v in cmc(result, self.ranks).items()}
        for p in tpir_at_fpir(result, self.fpir_targets, self.tpir_rule):
            out[tpir_key(p.fpir_target)] = p.tpir
        return out

    def statistics(self, weights: npt.NDArray[np.int64], where: str = "") -> Stats:
        """The numbers of each resample.

        Parameters
        ----------
        weights : array of int, shape (c, q)
            Row ``r`` gives how many times each probe is in resample ``r``.
        where : str
            Names the data in errors.

        Returns
        -------
        dict of str to ndarray of float64, shape (c,)
            ``cmc:<rank>`` and ``tpir_at_fpir:<target>``: what :func:`cmc` and
            :func:`tpir_at_fpir` give on the probes repeated by their weights.
        """
        w = np.asarray(weights).astype(np.int64, copy=False)
        n_mated = (w * self.mated).sum(axis=1)
        out: Stats = {}
        for r in self.ranks:
            hit = self.mated & (self.mate_rank <= r)
            out[cmc_key(r)] = (w * hit).sum(axis=1) / n_mated
        tpirs, _ = self.sides.rates(
            w[:, self.kept[self.sides.gen_units]],
            w[:, self.kept[self.sides.imp_units]],
            n_mated,
            self.fpir_targets,
            self.tpir_rule,
            TPIR_RULES,
            False,
            where,
        )
        out.update({tpir_key(t): v for t, v in zip(self.fpir_targets, tpirs, strict=True)})
        return out


# ------------------------------------------------------------------------------ resampling


def draw_counts(rng: np.random.Generator, strata: Sequence[IntArray], n_units: int) -> IntArray:
    """One resample's multiplicities: each stratum drawn with replacement, keeping its size.

    Parameters
    ----------
    rng : numpy.random.Generator
    strata : sequence of int arrays
        The unit indices of each stratum, in the order they are drawn.
    n_units : int
        The length of the result.

    Returns
    -------
    ndarray of int64, shape (n_units,)
        How many times each unit is drawn; for a stratum ``u`` of ``n`` units,
        ``idx = rng.integers(0, n, size=n)`` and unit ``u[i]`` counts ``#{idx == i}``.
    """
    counts = np.zeros(n_units, dtype=np.int64)
    for units in strata:
        n = units.size
        if n:
            counts[units] = np.bincount(rng.integers(0, n, size=n), minlength=n)
    return counts


def _chunks(n_resamples: int, n_units: int) -> list[tuple[int, int]]:
    size = max(1, CHUNK_ELEMENTS // max(n_units, 1))
    return [(a, min(a + size, n_resamples)) for a in range(0, n_resamples, size)]


def fold_strata(folds: npt.ArrayLike, is_same: npt.ArrayLike) -> list[IntArray]:
    """The (fold, is_same) strata: folds ascending, impostors before genuine pairs."""
    f, y = np.asarray(folds), np.asarray(is_same, dtype=bool)
    return [
        np.flatnonzero((f == k) & (y == label)).astype(np.int64)
        for k in np.unique(f)
        for label in (False, True)
    ]


def bootstrap_folds(
    engines: Sequence[FoldEngine], strata: Sequence[IntArray], n_resamples: int, seed: int
) -> list[Stats]:
    """Each engine's numbers on the same ``n_resamples`` stratified pair resamples.

    Returns
    -------
    list of dict of str to ndarray, shape (n_resamples,)
        One dict per engine, in order.
    """
    n = engines[0].scores.size
    rng = np.random.default_rng(seed)
    parts: list[list[Stats]] = [[] for _ in engines]
    for a, b in _chunks(n_resamples, n):
        weights = np.stack([draw_counts(rng, strata, n) for _ in range(a, b)])
        for e, engine in enumerate(engines):
            parts[e].append(engine.statistics(weights, f" (of resamples {a}..{b - 1})"))
    return [_concat(p) for p in parts]


def _concat(parts: list[Stats]) -> Stats:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass(frozen=True)
class SplitLayout:
    """The units of one split, shared by every report (their ids are identical).

    Attributes
    ----------
    split : int
    pair_rows : ndarray of int64
        The rows of the per-pair arrays in this split.
    templates : int
        The number of distinct 1:1 templates (ids of ``left`` and ``right``).
    left, right : ndarray of int64, shape (len(pair_rows),)
        Each pair's template indices into the split's distinct ids, ascending.
    probe_strata : list of ndarray of int64
        The 1:N probe strata (equal mated pattern over the galleries; patterns ascending),
        as indices into the split's distinct probe ids, ascending.
    n_probes : int
        The number of distinct probe templates.
    galleries : list of (name, rows, index)
        Per gallery (in file order): its rows of the per-probe arrays and each row's probe
        index.
    """

    split: int
    pair_rows: IntArray
    templates: int
    left: IntArray
    right: IntArray
    probe_strata: list[IntArray]
    n_probes: int
    galleries: list[tuple[str, IntArray, IntArray]]


def split_layouts(units: dict[str, npt.NDArray[Any]]) -> list[SplitLayout]:
    """Each split's units: its pairs' template indices, its probes' strata and galleries."""
    none = np.zeros(0, dtype=np.int64)
    pair_split, probe_split = units.get("split", none), units.get("probe_split", none)
    pair_left, pair_right = units.get("left", none), units.get("right", none)
    layouts = []
    for split in np.unique(np.concatenate((pair_split, probe_split))):
        rows = np.flatnonzero(pair_split == split).astype(np.int64)
        templates = np.unique(np.concatenate((pair_left[rows], pair_right[rows])))
        left = np.searchsorted(templates, pair_left[rows]).astype(np.int64)
        right = np.searchsorted(templates, pair_right[rows]).astype(np.int64)
        p_rows = np.flatnonzero(probe_split == split).astype(np.int64)
        galleries: list[tuple[str, IntArray, IntArray]] = []
        strata: list[IntArray] = []
        n_probes = 0
        if p_rows.size:
            probes = np.unique(units["probe_template"][p_rows])
            n_probes = probes.size
            names = list(dict.fromkeys(str(g) for g in units["probe_gallery"][p_rows]))
            pattern = np.zeros((len(names), n_probes), dtype=np.int8)  # 0 absent, 1 no, 2 yes
            for g, name in enumerate(names):
                g_rows = p_rows[units["probe_gallery"][p_rows] == name]
                index = np.searchsorted(probes, units["probe_template"][g_rows]).astype(np.int64)
                pattern[g, index] = np.where(units["probe_mated"][g_rows], 2, 1)
                galleries.append((name, g_rows, index))
            kinds, inverse = np.unique(pattern.T, axis=0, return_inverse=True)
            inverse = np.asarray(inverse).reshape(-1)
            strata = [np.flatnonzero(inverse == k).astype(np.int64) for k in range(len(kinds))]
        layouts.append(
            SplitLayout(
                split=int(split),
                pair_rows=rows,
                templates=int(templates.size),
                left=left,
                right=right,
                probe_strata=strata,
                n_probes=n_probes,
                galleries=galleries,
            )
        )
    return layouts


@dataclass
class SplitEngines:
    """One report's engines, split by split (None where a split has no 1:1 or no 1:N)."""

    verification: list[VerificationEngine | None]
    identification: list[list[IdentificationEngine]]


def split_engines(
    data: dict[str, npt.NDArray[Any]],
    layouts: Sequence[SplitLayout],
    far_targets: Sequence[float],
    fpir_targets: Sequence[float],
    tar_rule: str,
    tpir_rule: str,
) -> SplitEngines:
    """One report's engines over ``layouts`` (from its per-unit arrays ``data``)."""
    ver: list[VerificationEngine | None] = []
    ident: list[list[IdentificationEngine]] = []
    for layout in layouts:
        rows = layout.pair_rows
        ver.append(
            VerificationEngine(data["score"][rows], data["is_same"][rows], far_targets, tar_rule)
            if rows.size
            else None
        )
        ident.append(
            [
                IdentificationEngine(
                    data["probe_mated"][g_rows],
                    data["probe_mate_rank"][g_rows],
                    data["probe_mate_score"][g_rows],
                    data["probe_top_score"][g_rows],
                    CMC_RANKS,
                    fpir_targets,
                    tpir_rule,
                )
                for _, g_rows, _ in layout.galleries
            ]
        )
    return SplitEngines(ver, ident)


def _combine_splits(per_split: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Mean over galleries within a split, then over splits (as the report's summary).

    ``per_split[s]`` lists per-gallery (or the one 1:1) dicts of values; values may be
    floats or arrays of resamples (then the mean runs over the last axis of a stack).
    """
    split_values: list[dict[str, Any]] = []
    for entries in per_split:
        if not entries:
            continue
        if len(entries) == 1:
            split_values.append(entries[0])
        else:
            split_values.append(
                {k: np.stack([e[k] for e in entries], axis=-1).mean(axis=-1) for k in entries[0]}
            )
    if not split_values:
        return {}
    return {
        k: np.stack([v[k] for v in split_values], axis=-1).mean(axis=-1) for k in split_values[0]
    }


def split_point(engines: SplitEngines) -> dict[str, float]:
    """The full-sample split-protocol numbers (library functions, averaged as the report)."""
    out = _combine_splits([[v.point()] if v else [] for v in engines.verification])
    out.update(_combine_splits([[g.point() for g in gs] for gs in engines.identification]))
    return {k: float(v) for k, v in out.items()}


def bootstrap_splits(
    engines: Sequence[SplitEngines],
    layouts: Sequence[SplitLayout],
    n_resamples: int,
    seed: int,
) -> list[Stats]:
    """Each report's split-protocol numbers on the same resamples (module docstring)."""
    rng = np.random.default_rng(seed)
    widest = max([layout.pair_rows.size + layout.n_probes for layout in layouts] + [1])
    parts: list[list[Stats]] = [[] for _ in engines]
    for a, b in _chunks(n_resamples, widest):
        template_w = [np.zeros((b - a, lay.templates), dtype=np.int64) for lay in layouts]
        probe_w = [np.zeros((b - a, lay.n_probes), dtype=np.int64) for lay in layouts]
        for r in range(b - a):
            for s, lay in enumerate(layouts):
                if lay.pair_rows.size:
                    everything = [np.arange(lay.templates, dtype=np.int64)]
                    template_w[s][r] = draw_counts(rng, everything, lay.templates)
                if lay.n_probes:
                    probe_w[s][r] = draw_counts(rng, lay.probe_strata, lay.n_probes)
        where = f" (of resamples {a}..{b - 1})"
        for e, eng in enumerate(engines):
            ver_stats: list[list[Stats]] = []
            ident_stats: list[list[Stats]] = []
            for s, lay in enumerate(layouts):
                v = eng.verification[s]
                if v is None:
                    ver_stats.append([])
                else:
                    stats = v.template_statistics(
                        template_w[s], lay.left, lay.right, f"{where} of split {lay.split}"
                    )
                    ver_stats.append([stats])
                ident_stats.append(
                    [
                        g.statistics(probe_w[s][:, index], f"{where} of split {lay.split}")
                        for g, (_, _, index) in zip(
                            eng.identification[s], lay.galleries, strict=True
                        )
                    ]
                )
            combined = _combine_splits(ver_stats)
            combined.update(_combine_splits(ident_stats))
            parts[e].append(combined)
    return [_concat(p) for p in parts]


# ------------------------------------------------------------------------------ reports


@dataclass(frozen=True)
class Headline:
    """One report's headline numbers.

    Attributes
    ----------
    path : str
    label : str
        The report's ``label``, else its file name without ``.json``.
    model : str or None
        The store's ``model`` attribute.
    store_content_sha256 : str or None
    values : dict of str to float
        Metric key -> the number the report states.
    spread : dict of str to dict
        Metric key -> {"std": ..., "stderr": ...} where the report gives them (fold
        accuracy: std ddof=1 and std/sqrt(k) over folds; split protocols: std ddof=1 over
        splits, None with one split).
    """

    path: str
    label: str
    model: str | None
    store_content_sha256: str | None
    values: dict[str, float]
    spread: dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class Difference:
    """A report's difference to the reference on one metric.

    Attributes
    ----------
    report : int
        Index of the report (>= 1; 0 is the reference).
    metric : str
        A metric key.
    estimate : float
        value(report) - value(reference), full sample.
    low, high : float
        The paired percentile bootstrap interval of the difference.
    std_error : float
        Standard deviation (ddof=1) of the bootstrap differences (0 with one resample).
    within_noise : bool
        ``low <= 0 <= high``.
    """

    report: int
    metric: str
    estimate: float
    low: float
    high: float
    std_error: float
    within_noise: bool


@dataclass(frozen=True)
class Comparison:
    """Reports of one protocol with the differences to the first (see the module docstring)."""

    protocol: str
    protocol_sha256: str
    kind: str
    metrics: list[Metric]
    reports: list[Headline]
    differences: list[Difference]
    settings: dict[str, Any]
    notes: list[str]

    def difference(self, report: int, metric: str) -> Difference:
        """The difference of report ``report`` (>= 1) on ``metric``."""
        for d in self.differences:
            if d.report == report and d.metric == metric:
                return d
        raise KeyError((report, metric))

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (module docstring); values are fractions."""
        return jsonable(
            {
                "schema": "facebench-compare",
                "schema_version": COMPARE_SCHEMA_VERSION,
                "protocol": self.protocol,
                "protocol_sha256": self.protocol_sha256,
                "kind": self.kind,
                "settings": self.settings,
                "metrics": [
                    {"key": m.key, "label": m.label, "higher_is_better": m.higher_is_better}
                    for m in self.metrics
                ],
                "reports": [
                    {
                        "path": h.path,
                        "label": h.label,
                        "model": h.model,
                        "store_content_sha256": h.store_content_sha256,
                        "headline": h.values,
                        "spread": h.spread,
                    }
                    for h in self.reports
                ],
                "differences": [
                    {
                        "report": d.report,
                        "label": self.reports[d.report].label,
                        "metric": d.metric,
                        "estimate": d.estimate,
                        "interval": [d.low, d.high],
                        "std_error": d.std_error,
                        "within_noise": d.within_noise,
                    }
                    for d in self.differences
                ],
                "notes": self.notes,
            }
        )

    def to_json(self) -> str:
        """Indented JSON (strict: no NaN or Infinity literals)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def _kind(path: Path, report: dict[str, Any]) -> str:
    if "accuracy" in report:
        return "fold"
    if "splits" in report:
        return "split"
    raise ReportError(
        f"{path}: a report with neither `accuracy` (fold protocols) nor `splits` (split"
        " protocols); write one with `facebench verify --json`"
    )


def _load_units(path: Path, kind: str) -> dict[str, Any]:
    """The per-unit arrays of ``path`` (its ``.scores.npz``), checked for the keys needed."""
    npz = scores_path_for(path)
    if not npz.exists():
        raise ReportError(
            f"{npz}: no per-pair scores beside {path}; a paired bootstrap needs them, and"
            f" `facebench verify ... --json {path.name}` writes them next to the report"
        )
    try:
        with np.load(npz, allow_pickle=False) as handle:
            data = {k: handle[k] for k in handle.files}
    except (OSError, ValueError) as err:
        raise ReportError(f"{npz}: cannot read the per-pair scores ({err})") from None
    if kind == "fold":
        needed = [*FOLD_UNITS, "score"]
    else:
        needed = [*SPLIT_UNITS, "score"] if "split" in data or "probe_split" not in data else []
        if "probe_split" in data:
            needed += [*PROBE_UNITS, *PROBE_VALUES]
    missing = [k for k in needed if k not in data]
    if missing:
        raise ReportError(
            f"{npz}: expected the arrays {', '.join(needed)}, but {', '.join(missing)}"
            " missing; run `facebench verify --json` again to write it"
        )
    return data


def _same_units(
    paths: Sequence[Path], datas: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    ref = datas[0]
    for path, data in zip(paths[1:], datas[1:], strict=True):
        for key in keys:
            a, b = ref.get(key), data.get(key)
            if a is None and b is None:
                continue
            if a is None or b is None or a.shape != b.shape:
                raise FacebenchError(
                    f"{scores_path_for(path)}: expected the same units as"
                    f" {scores_path_for(paths[0])} for a paired bootstrap, but `{key}` has"
                    f" {'no' if b is None else b.shape[0]} entries against"
                    f" {'no' if a is None else a.shape[0]}; verify both with the same protocol"
                    " files and options (--pairs, --split, --allow-skipped)"
                )
            differ = np.flatnonzero(a != b)
            if differ.size:
                i = int(differ[0])
                raise FacebenchError(
                    f"{scores_path_for(path)}: expected the same units in the same order as"
                    f" {scores_path_for(paths[0])} for a paired bootstrap, but `{key}` differs"
                    f" at {differ.size} entries (first: index {i}, {b[i]!r} against {a[i]!r});"
                    " verify both with the same protocol files and options (--pairs, --split,"
                    " --allow-skipped)"
                )


def _common_targets(
    paths: Sequence[Path], lists: Sequence[list[float]], what: str, notes: list[str]
) -> list[float]:
    common = [t for t in lists[0] if all(t in other for other in lists[1:])]
    for path, targets in zip(paths, lists, strict=True):
        dropped = [t for t in targets if t not in common]
        if dropped:
            notes.append(
                f"{path}: {what} {', '.join(f'{t:g}' for t in dropped)} not in every report;"
                " compared only at the common targets"
            )
    return common


def _fold_headline(report: dict[str, Any], far_targets: Sequence[float]) -> dict[str, float]:
    out = {
        "accuracy": report["accuracy"]["mean"],
        "auc": report["auc"],
        "eer": report["eer"],
    }
    by_target = {p["far_target"]: p["tar"] for p in report["tar_at_far"]}
    out.update({tar_key(t): by_target[t] for t in far_targets})
    return out


def _split_headline(
    report: dict[str, Any], far_targets: Sequence[float], fpir_targets: Sequence[float]
) -> tuple[dict[str, float], dict[str, dict[str, float | None]]]:
    summary = report["summary"]
    values: dict[str, float] = {}
    spread: dict[str, dict[str, float | None]] = {}

    def put(key: str, entry: dict[str, Any]) -> None:
        values[key] = entry["mean"]
        spread[key] = {"std": entry.get("std"), "stderr": None}

    if "tar_at_far" in summary:
        by_target = {e["far_target"]: e for e in summary["tar_at_far"]}
        for t in far_targets:
            put(tar_key(t), by_target[t])
        put("auc", summary["auc"])
    if "cmc" in summary:
        for r in CMC_RANKS:
            if str(r) in summary["cmc"]:
                put(cmc_key(r), summary["cmc"][str(r)])
        by_fpir = {e["fpir_target"]: e for e in summary["tpir_at_fpir"]}
        for t in fpir_targets:
            put(tpir_key(t), by_fpir[t])
    return values, spread


def _metrics(kind: str, keys: Sequence[str]) -> list[Metric]:
    out = []
    for key in keys:
        name, _, arg = key.partition(":")
        if key == "accuracy":
            out.append(Metric(key, "accuracy"))
        elif key == "auc":
            out.append(Metric(key, "AUC", decimals=3))
        elif key == "eer":
            out.append(Metric(key, "EER", higher_is_better=False))
        elif name == "tar_at_far":
            out.append(Metric(key, f"TAR@FAR={arg}"))
        elif name == "cmc":
            out.append(Metric(key, f"rank-{arg}"))
        elif name == "tpir_at_fpir":
            out.append(Metric(key, f"TPIR@FPIR={arg}"))
    return out


def _check_rules(paths: Sequence[Path], reports: Sequence[dict[str, Any]], kind: str) -> None:
    for path, report in zip(paths, reports, strict=True):
        compat = report.get("conventions", {}).get("compat")
        if compat:
            raise FacebenchError(
                f"{path}: made with --compat {compat}; compare refits facebench's k-fold rule"
                " in every resample, so verify again without --compat to compare"
            )
    names = ["tar_rule"] + (["tpir_rule"] if kind == "split" else [])
    for name in names:
        rules = [r.get("conventions", {}).get(name) for r in reports]
        for path, rule in zip(paths[1:], rules[1:], strict=True):
            if rule != rules[0]:
                raise FacebenchError(
                    f"{path}: expected the {name.replace('_', ' ')} of {paths[0]}"
                    f" ({rules[0]!r}), but got {rule!r}; verify both with the same --tar-rule"
                )


def compare_reports(
    paths: Sequence[str | Path],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Comparison:
    """Compare reports of one protocol to the first, with paired bootstrap intervals.

    Parameters
    ----------
    paths : sequence of path
        Report JSON files written by ``facebench verify --json``; the first is the
        reference. With two or more, each needs its ``.scores.npz`` beside it.
    n_resamples : int
        Bootstrap resamples (>= 1).
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same intervals.
    confidence : float
        Coverage of the intervals, in (0, 1).

    Returns
    -------
    Comparison
        The headline numbers of every report, and for every other report and metric the
        difference to the reference with its interval. The resampling schemes, the order
        of the random draws and the refusals are in the module docstring.

    Raises
    ------
    FacebenchError
        Different protocols or protocol files, different TAR/TPIR rules, ``--compat``
        reports, a missing or stale ``.scores.npz``, or different units.
    """
    if not paths:
        raise FacebenchError("Expected at least one report, but got none")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise FacebenchError(f"Expected --resamples >= 1, but got {n_resamples!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise FacebenchError(f"Expected --confidence in (0, 1), but got {confidence!r}")
    files = [Path(p) for p in paths]
    reports = [load_report(p) for p in files]
    ref = reports[0]
    for path, report in zip(files[1:], reports[1:], strict=True):
        if report["protocol"] != ref["protocol"]:
            raise FacebenchError(
                f"{path}: expected a report of protocol {ref['protocol']!r} like {files[0]},"
                f" but got {report['protocol']!r}; compare reports of one protocol"
            )
        if report.get("protocol_sha256") != ref.get("protocol_sha256"):
            raise FacebenchError(
                f"{path}: expected the protocol files of {files[0]} (protocol_sha256"
                f" {ref.get('protocol_sha256')}), but got {report.get('protocol_sha256')}"
                f" ({report.get('protocol_file')}); reports of different protocol files"
                " cannot be compared"
            )
    kind = _kind(files[0], ref)
    for path, report in zip(files[1:], reports[1:], strict=True):
        if _kind(path, report) != kind:
            raise FacebenchError(f"{path}: not the same kind of report as {files[0]}")
    _check_rules(files, reports, kind)
    notes: list[str] = []
    if kind == "fold":
        far_targets = _common_targets(
            files, [[p["far_target"] for p in r["tar_at_far"]] for r in reports], "FAR", notes
        )
        fpir_targets: list[float] = []
        values = [_fold_headline(r, far_targets) for r in reports]
        spreads: list[dict[str, dict[str, float | None]]] = [
            {"accuracy": {"std": r["accuracy"]["std"], "stderr": r["accuracy"]["stderr"]}}
            for r in reports
        ]
    else:
        far_targets = _common_targets(
            files, [r["conventions"].get("far_targets", []) for r in reports], "FAR", notes
        )
        fpir_targets = _common_targets(
            files, [r["conventions"].get("fpir_targets", []) for r in reports], "FPIR", notes
        )
        pairs = [_split_headline(r, far_targets, fpir_targets) for r in reports]
        values = [v for v, _ in pairs]
        spreads = [s for _, s in pairs]
    keys = list(values[0])
    headlines = [
        Headline(
            path=str(path),
            label=report.get("label") or path.name.removesuffix(".json"),
            model=report.get("store", {}).get("attributes", {}).get("model"),
            store_content_sha256=report.get("store", {}).get("content_sha256"),
            values=v,
            spread=s,
        )
        for path, report, v, s in zip(files, reports, values, spreads, strict=True)
    ]
    settings: dict[str, Any] = {
        "resamples": n_resamples if len(files) > 1 else 0,
        "seed": seed,
        "confidence": float(confidence),
        "interval": INTERVAL_RULE,
        "unit": "pair" if kind == "fold" else "template (1:1), probe template (1:N)",
        "scheme": FOLD_SCHEME if kind == "fold" else SPLIT_SCHEME,
        "rng": RNG_RULE,
        "reference": str(files[0]),
    }
    differences: list[Difference] = []
    if len(files) > 1:
        points, samples = _bootstrap(
            files, reports, kind, far_targets, fpir_targets, n_resamples, seed
        )
        for path, v, p in zip(files, values, points, strict=True):
            _check_reproduced(path, v, p)
        alpha = (1.0 - float(confidence)) / 2.0
        for i in range(1, len(files)):
            for key in keys:
                d = samples[i][key] - samples[0][key]
                low, high = np.quantile(d, [alpha, 1.0 - alpha])
                differences.append(
                    Difference(
                        report=i,
                        metric=key,
                        estimate=points[i][key] - points[0][key],
                        low=float(low),
                        high=float(high),
                        std_error=float(np.std(d, ddof=1)) if d.size > 1 else 0.0,
                        within_noise=bool(low <= 0.0 <= high),
                    )
                )
    return Comparison(
        protocol=ref["protocol"],
        protocol_sha256=ref.get("protocol_sha256", ""),
        kind=kind,
        metrics=_metrics(kind, keys),
        reports=headlines,
        differences=differences,
        settings=settings,
        notes=notes,
    )


def _bootstrap(
    files: Sequence[Path],
    reports: Sequence[dict[str, Any]],
    kind: str,
    far_targets: Sequence[float],
    fpir_targets: Sequence[float],
    n_resamples: int,
    seed: int,
) -> tuple[list[dict[str, float]], list[Stats]]:
    """Full-sample numbers and bootstrap samples of every report, from the per-unit files."""
    conventions = reports[0].get("conventions", {})
    tar_rule = conventions.get("tar_rule", "exact")
    if kind == "fold":
        datas = [_load_units(p, kind) for p in files]
        _same_units(files, datas, FOLD_UNITS)
        engines = [
            FoldEngine(d["score"], d["is_same"], d["fold"], far_targets, tar_rule) for d in datas
        ]
        points = [e.point() for e in engines]
        strata = fold_strata(datas[0]["fold"], datas[0]["is_same"])
        return points, bootstrap_folds(engines, strata, n_resamples, seed)
    datas = [_load_units(p, kind) for p in files]
    _same_units(files, datas, (*SPLIT_UNITS, *PROBE_UNITS))
    layouts = split_layouts(datas[0])
    tpir_rule = conventions.get("tpir_rule", "exact")
    per_report = [
        split_engines(d, layouts, far_targets, fpir_targets, tar_rule, tpir_rule) for d in datas
    ]
    points = [split_point(e) for e in per_report]
    return points, bootstrap_splits(per_report, layouts, n_resamples, seed)


def _check_reproduced(path: Path, stated: dict[str, float], computed: dict[str, float]) -> None:
    for key, value in stated.items():
        got = computed.get(key)
        if got is None or value is None or not math.isclose(value, got, rel_tol=0, abs_tol=1e-9):
            raise ReportError(
                f"{scores_path_for(path)}: expected per-pair data that reproduce {path}"
                f" ({key} = {value}), but it gives {got}; the file is stale or belongs to"
                " another report: run `facebench verify --json` again"
            )


# ------------------------------------------------------------------------------ output


def _pct(value: float | None, decimals: int) -> str:
    return "—" if value is None else f"{100 * value:.{decimals}f}"


def _signed(value: float, decimals: int) -> str:
    text = f"{100 * value:+.{decimals}f}"
    return text.replace("-0." + "0" * decimals, "+0." + "0" * decimals) if decimals else text


NOISE_MARK = "≈"


@dataclass(frozen=True)
class Cell:
    """One table cell: a report's number and, for the other reports, its difference.

    ``value`` is a percentage, with ``± std`` (split protocols, over splits) or ``± stderr``
    (fold accuracy, over folds) where known; ``estimate`` and ``interval`` are the
    difference to the reference in percentage points (``+d`` and ``[low, high]``), empty
    for the reference; ``within_noise``: the interval contains 0.
    """

    value: str
    estimate: str = ""
    interval: str = ""
    within_noise: bool = False


def format_cells(comparison: Comparison) -> list[list[Cell]]:
    """The table's cells: per report, per metric."""
    rows = []
    for i, h in enumerate(comparison.reports):
        cells = []
        for m in comparison.metrics:
            value = _pct(h.values.get(m.key), m.decimals)
            spread = h.spread.get(m.key, {})
            extra = spread.get("stderr") if comparison.kind == "fold" else spread.get("std")
            if extra is not None:
                value += f" ± {_pct(extra, m.decimals)}"
            if i == 0 or not comparison.differences:
                cells.append(Cell(value))
                continue
            d = comparison.difference(i, m.key)
            interval = f"[{_signed(d.low, m.decimals)}, {_signed(d.high, m.decimals)}]"
            cells.append(Cell(value, _signed(d.estimate, m.decimals), interval, d.within_noise))
        rows.append(cells)
    return rows


def legend(comparison: Comparison) -> list[str]:
    """The lines that explain the table."""
    s = comparison.settings
    spread = (
        "± is the standard error over the folds (std ddof=1 / sqrt(k)) for accuracy"
        if comparison.kind == "fold"
        else "± is the std (ddof=1) over the splits"
    )
    lines = [f"Numbers in %; {spread}."]
    if comparison.differences:
        lines.append(
            f"Below each number: its difference to {comparison.reports[0].label} (the first"
            f" row) in percentage points, with the {100 * s['confidence']:g}% paired bootstrap"
            f" interval ({s['resamples']} resamples, seed {s['seed']}; {s['scheme']})."
        )
        lower = " EER: lower is better." if any(m.key == "eer" for m in comparison.metrics) else ""
        lines.append(
            f"{NOISE_MARK}: the interval contains 0, so the difference is within resampling"
            f" noise.{lower}"
        )
    return lines


def to_markdown(comparison: Comparison) -> str:
    """A Markdown table (one row per report) with its legend below."""
    header = ["model", *[m.label + " (%)" for m in comparison.metrics]]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(comparison.metrics)) + "|",
    ]
    several = len(comparison.reports) > 1
    for i, (h, cells) in enumerate(zip(comparison.reports, format_cells(comparison), strict=True)):
        name = h.label.replace("|", "\\|") + (" (ref.)" if i == 0 and several else "")
        texts = [
            c.value
            if not c.estimate
            else f"{c.value}<br>{c.estimate} {c.interval}"
            + (f" {NOISE_MARK}" if c.within_noise else "")
            for c in cells
        ]
        lines.append("| " + " | ".join([name, *texts]) + " |")
    lines.append("")
    lines += [f"{line}  " for line in legend(comparison)]
    lines += [f"Note: {note}  " for note in comparison.notes]
    return "\n".join(lines).rstrip() + "\n"


def write_outputs(
    comparison: Comparison,
    json_path: str | Path | None,
    markdown_path: str | Path | None,
    overwrite: bool = False,
) -> list[Path]:
    """Write the JSON and/or Markdown atomically; both are checked before either is written."""
    targets = [(p, f) for p, f in ((json_path, "json"), (markdown_path, "md")) if p is not None]
    for path, _ in targets:
        check_writable(path, overwrite)
    written = []
    for path, what in targets:
        text = comparison.to_json() if what == "json" else to_markdown(comparison)
        written.append(write_text_atomic(path, text, overwrite))
    return written
