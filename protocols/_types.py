"""The canonical shapes that protocol parsers produce. No features, no metrics here."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.fileio import file_sha256

__all__ = [
    "Identification",
    "PairsProtocol",
    "Split",
    "TemplateProtocol",
    "Templates",
    "Verification",
    "file_sha256",
    "files_sha256",
]


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
    unit : str
        What a key names: ``"item"`` (a store id) or ``"video"`` (a folder whose frames are
        the store ids under it).
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
    unit: str = "item"

    @property
    def n_pairs(self) -> int:
        """Number of pairs."""
        return len(self.left)

    @property
    def items(self) -> list[str]:
        """The distinct item keys the pairs need, sorted."""
        return sorted(set(self.left) | set(self.right))


@dataclass(frozen=True)
class Templates:
    """A set of templates and the items (store ids) they are made of.

    One row per (template, item) membership, in file order. A template spans one or more
    media (a video's frames or one still); pooling (``facebench.pooling``) turns the rows
    into one feature per template.

    Attributes
    ----------
    ids : ndarray of int64, shape (T,)
        The template ids as the files give them, distinct.
    subjects : ndarray of int64, shape (T,)
        The subject of each template (-1 where the files do not say).
    item_keys : tuple of str, length M
        The store id of each membership row (an item may appear in several templates).
    item_template : ndarray of int64, shape (M,)
        Row -> index into ``ids`` (0 .. T-1).
    item_media : ndarray of int64, shape (M,)
        Row -> media id (a video or a still image), as the files give it.
    item_score : ndarray of float64, shape (M,), or None
        Row -> detector score where the protocol has one (IJB-B/C), else None.
    """

    ids: npt.NDArray[np.int64]
    subjects: npt.NDArray[np.int64]
    item_keys: tuple[str, ...]
    item_template: npt.NDArray[np.int64]
    item_media: npt.NDArray[np.int64]
    item_score: npt.NDArray[np.float64] | None = None

    @property
    def n_templates(self) -> int:
        """T."""
        return int(self.ids.size)

    def index(self) -> dict[int, int]:
        """Template id -> position in ``ids``."""
        return {int(t): i for i, t in enumerate(self.ids)}


@dataclass(frozen=True)
class Verification:
    """1:1 comparisons between templates of one split.

    Attributes
    ----------
    templates : Templates
        The templates the comparisons refer to.
    left, right : ndarray of int64 (or int32), shape (P,)
        Positions in ``templates.ids`` of the two templates of each comparison, file order.
        IJB-B/C pairs loaded from the protocol cache are int32 read-only memory maps of
        the cache entry (:mod:`facebench.cache`); a parse gives int64.
    is_same : ndarray of bool, shape (P,)
        True for a genuine (same subject) comparison.
    """

    templates: Templates
    left: npt.NDArray[np.integer[Any]]
    right: npt.NDArray[np.integer[Any]]
    is_same: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Identification:
    """1:N open-set search: probe templates against one gallery.

    Attributes
    ----------
    gallery : str
        The gallery's name ("G1", "G2", "S1", "S2"; IJB-A: "gallery").
    gallery_templates, probe_templates : Templates
        Subjects are required (a probe is mated when its subject has a gallery template).
    """

    gallery: str
    gallery_templates: Templates
    probe_templates: Templates


@dataclass(frozen=True)
class Split:
    """One split of a template protocol: 1:1, 1:N or both. ``split`` counts from 1."""

    split: int
    verification: Verification | None
    identification: tuple[Identification, ...] = ()


@dataclass(frozen=True)
class TemplateProtocol:
    """A template benchmark (IJB-A, IJB-B, IJB-C) parsed from a user's protocol folder.

    Attributes
    ----------
    name : str
        Registry name.
    source : str
        The protocol folder.
    sha256 : str
        SHA-256 of the sorted ``"<relative path> <sha256>"`` lines of exactly the files read.
    splits : tuple of Split
    counts : dict
        What the parser read (per split and in total), including repeated rows dropped.
    warnings : tuple of str
        Differences from the official release's counts, repeated rows, ...
    files : tuple of str
        The relative paths of the files read.
    """

    name: str
    source: str
    sha256: str
    splits: tuple[Split, ...]
    counts: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def items(self) -> list[str]:
        """Every store id any split needs, sorted."""
        keys: set[str] = set()
        for split in self.splits:
            if split.verification is not None:
                keys.update(split.verification.templates.item_keys)
            for search in split.identification:
                keys.update(search.gallery_templates.item_keys)
                keys.update(search.probe_templates.item_keys)
        return sorted(keys)


@dataclass
class DeferredTemplateProtocol:
    """A template protocol whose 1:1 pairs are still being read (IJB-B/C's 15.7 M-line pair
    file), for :func:`facebench.evaluate_splits.evaluate_templates`, which pools the
    templates from the store meanwhile.

    Attributes
    ----------
    view : TemplateProtocol
        Everything but the pairs: the final protocol's splits with the very same
        :class:`Templates` objects, each verification with no pair; no counts, warnings or
        checksum. Only for finding and pooling the templates.
    finish : callable
        Waits for the pairs and returns the whole :class:`TemplateProtocol` (raising what
        the pair file's parse raises).
    """

    view: TemplateProtocol
    finish: Callable[[], TemplateProtocol]
    _done: list[TemplateProtocol] = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        return self.view.name

    def result(self) -> TemplateProtocol:
        """The whole protocol (the pair file read; the same result on every call)."""
        if not self._done:
            self._done.append(self.finish())
        return self._done[0]


def files_sha256(
    root: str | Path, relative_paths: list[str], known: Mapping[str, str] | None = None
) -> str:
    """The protocol checksum of PROTOCOLS.md: sha256 of the sorted "path sha256" lines.

    ``known`` maps relative paths to the sha256 of files already hashed while they were
    read (the same bytes), so that a large file is not read twice.
    """
    known = known or {}
    lines = sorted(
        f"{rel} {known.get(rel) or file_sha256(Path(root) / rel)}" for rel in relative_paths
    )
    return hashlib.sha256(("\n".join(lines) + "\n").encode("utf-8")).hexdigest()
