"""Metrics of weighted resamples: a bootstrap's numbers, equal to the library functions'.

A resample is a row of weights: how many times each unit (a pair, a template's pairs, a
probe) is drawn. An engine takes one set of scored units once and evaluates a batch of
weight rows, each number exactly what the library function gives on the units repeated by
their weights: :class:`VerificationEngine` (AUC and TAR at FAR; pair weights, or the
product of the weights of a pair's two templates), :class:`FoldEngine` (also EER and the
k-fold accuracy with the fold thresholds refit) and :class:`IdentificationEngine` (CMC at
ranks and TPIR at FPIR of one gallery's searches). Their statistics are keyed by
:func:`tar_key`, :func:`tpir_key`, :func:`cmc_key` and ``"accuracy"``, ``"auc"``,
``"eer"``.

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

How the resamples are drawn (the paired schemes and the order of the random draws) and
combined over splits is :mod:`facebench.compare.resample`; the reports, intervals and
tables are :mod:`facebench.compare`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.errors import FacebenchError
from facebench.metrics.counts import ThresholdCounts, check_scores, count_at_thresholds
from facebench.metrics.identification import TPIR_RULES, SearchResult, cmc, tpir_at_fpir
from facebench.metrics.kfold import kfold_accuracy
from facebench.metrics.operating import TAR_RULES, tar_at_far
from facebench.metrics.roc import auc, equal_error_rate

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Stats = dict[str, FloatArray]


# ------------------------------------------------------------------------------ keys


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
