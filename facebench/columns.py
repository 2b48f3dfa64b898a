"""Per-pair columns made a block at a time, as the per-pair file is written.

At IJB-C size the per-pair file holds 15.7 M rows: two template ids, a split number and a
float64 score per pair, 280 MB. Held as arrays they are made in full while the pairs are
scored, and every fresh page of them costs the kernel a page to clear. Each column is a
function of arrays the evaluation holds anyway (the protocol's pair positions, the float32
scores and the few re-scored ones), so it is kept as that function and made block by block
when :func:`facebench.report.save_npz` writes it: the same bytes (tested), a few MiB held.

``np.asarray(column)`` gives the whole column as an array (for code that wants one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


class LazyColumn:
    """A 1-D column that makes its values on demand (subclasses define :meth:`block`)."""

    dtype: np.dtype[Any]
    size: int

    def block(self, start: int, stop: int) -> npt.NDArray[Any]:
        """Values ``start .. stop - 1`` (``0 <= start <= stop <= size``) as a new array."""
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int]:
        return (self.size,)

    @property
    def ndim(self) -> int:
        return 1

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.size

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> npt.NDArray[Any]:
        whole = self.block(0, self.size)
        return whole if dtype is None else whole.astype(dtype, copy=False)


@dataclass(frozen=True, eq=False)
class Taken(LazyColumn):
    """``table[index]``: per pair, a value of a small table (a template's id by its
    position; with ``index`` None, ``table[0]`` for each of ``size`` pairs: a split
    number)."""

    table: npt.NDArray[Any]
    index: npt.NDArray[np.integer[Any]] | None
    size: int

    def __post_init__(self) -> None:
        if self.table.ndim != 1 or not self.table.size:
            raise ValueError("Expected a non-empty 1-D table")
        if self.index is not None and self.index.shape != (self.size,):
            raise ValueError(f"Expected an index of shape ({self.size},), got {self.index.shape}")

    @property
    def dtype(self) -> np.dtype[Any]:  # type: ignore[override]
        return self.table.dtype

    def block(self, start: int, stop: int) -> npt.NDArray[Any]:
        if self.index is None:
            return np.full(stop - start, self.table[0], dtype=self.table.dtype)
        return self.table.take(self.index[start:stop])


@dataclass(frozen=True, eq=False)
class Patched(LazyColumn):
    """float64 per pair: ``base`` widened to float64, with ``values[i]`` at ``at[i]``
    (``at`` ascending, distinct): float32 scores and their float64 re-scores."""

    base: npt.NDArray[np.floating[Any]]
    at: npt.NDArray[np.integer[Any]]
    values: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        if self.base.ndim != 1 or self.at.shape != self.values.shape:
            raise ValueError("Expected a 1-D base and as many positions as values")
        if self.at.size and (
            int(self.at[0]) < 0
            or int(self.at[-1]) >= self.base.size
            or bool(np.any(np.diff(self.at) <= 0))
        ):
            raise ValueError("Expected distinct ascending positions within the base")

    @property
    def dtype(self) -> np.dtype[Any]:  # type: ignore[override]
        return np.dtype(np.float64)

    @property
    def size(self) -> int:  # type: ignore[override]
        return int(self.base.size)

    def block(self, start: int, stop: int) -> npt.NDArray[Any]:
        out = self.base[start:stop].astype(np.float64)
        a, b = np.searchsorted(self.at, [start, stop])
        out[self.at[a:b] - start] = self.values[a:b]
        return out
