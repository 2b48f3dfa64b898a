"""The canonical shapes that protocol parsers produce. No features, no metrics here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from facebench.fileio import file_sha256

__all__ = ["PairsProtocol", "file_sha256"]


@dataclass(frozen=True)
class PairsProtocol:
    """Verification pairs with fold labels (LFW View 2, YTF splits, generic pairs files).

    Attributes
    ----------
    name : str
        The registry name of the benchmark (e.g. ``"lfw"``).
    source : str
        The protocol file that was read.
    sha256 : str
        SHA-256 of that file's bytes.
    left, right : tuple of str, length n_pairs
        Item keys (store ids) of each pair, in file order.
    is_same : ndarray of bool, shape (n_pairs,)
        True for a matched (genuine) pair.
    folds : ndarray of int64, shape (n_pairs,)
        The fold of each pair, counting from 1, as the file defines them.
    counts : dict
        What the parser read (lines, sets, pairs, items), for the report.
    warnings : tuple of str
        Anything unusual the parser met and kept.
    """

    name: str
    source: str
    sha256: str
    left: tuple[str, ...]
    right: tuple[str, ...]
    is_same: npt.NDArray[np.bool_]
    folds: npt.NDArray[np.int64]
    counts: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def n_pairs(self) -> int:
        """Number of pairs."""
        return len(self.left)

    @property
    def items(self) -> list[str]:
        """The distinct item keys the pairs need, sorted."""
        return sorted(set(self.left) | set(self.right))
