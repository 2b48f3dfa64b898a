"""Import features computed by any tool: an array plus an ids list -> a feature store.

The library side of ``facebench import``.
"""

from __future__ import annotations

from pathlib import Path

from facebench.errors import InputFormatError, located
from facebench.fileio import check_free_space, check_writable, file_sha256
from facebench.store import (
    StoreInfo,
    create_store,
    id_problem,
    normalize_rows,
    read_array,
)

_MESSAGE_LIMIT = 300  # a message quotes an id, not a whole line of megabytes


def _shortened(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "..."


def read_id_file(path: Path) -> list[str]:
    """Read ids, one per line, from a UTF-8 text file.

    LF or CRLF line ends, a UTF-8 byte-order mark and a final newline are accepted. An empty
    line, an id that breaks the store's id rules (:func:`facebench.store.id_problem`) or a
    repeated id is an error naming the file and the line (both lines for a repeat).

    Raises
    ------
    InputFormatError
        The file cannot be read, is not UTF-8, or a line is not a valid, new id.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputFormatError(
            f"{path}: cannot read the ids file ({err.strerror or err}); check the path"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        bad_line = data.count(b"\n", 0, err.start) + 1
        raise InputFormatError(
            located(path, bad_line, "Expected UTF-8 text, but got invalid bytes; save it as UTF-8")
        ) from None
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":  # the final newline, or an empty file
        lines.pop()
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        item = line.removesuffix("\r")
        problem = id_problem(item)
        if problem is not None:
            raise InputFormatError(located(path, number, _shortened(problem)))
        first = first_line.setdefault(item, number)
        if first != number:
            raise InputFormatError(
                located(
                    path,
                    number,
                    f"Expected unique ids, but {_shortened(repr(item))} is also on line"
                    f" {first}; remove one",
                )
            )
    return list(first_line)


def import_features(
    features_path: Path,
    ids_path: Path,
    output: Path,
    *,
    flip_features_path: Path | None = None,
    key: str | None = None,
    compression: str | None = None,
    overwrite: bool = False,
) -> StoreInfo:
    """Write a store from raw features (N, D) and N ids; rows are L2-normalized.

    The raw norms are recorded; ``model`` is ``imported:<features file name>``, its
    ``model_sha256`` the SHA-256 of the features file. The output is checked before any
    array is read and written atomically.

    Raises
    ------
    OutputExistsError
        ``output`` exists and ``overwrite`` is false.
    InputFormatError, StoreError
        An input is malformed: unreadable array, wrong shape, counts that differ, bad ids,
        NaN/inf or zero rows.
    """
    check_writable(output, overwrite)
    ids = read_id_file(ids_path)
    raw = read_array(features_path, key)
    if raw.ndim != 2:
        raise InputFormatError(
            f"{features_path}: Expected a 2-D array of features (N, D), but got shape {raw.shape}"
        )
    if raw.shape[0] != len(ids):
        raise InputFormatError(
            f"Expected one id per feature row, but {ids_path} has {len(ids)} ids and"
            f" {features_path} has {raw.shape[0]} rows; the two files must list the same items"
            " in the same order"
        )
    features, norms = normalize_rows(raw, source=str(features_path))
    features_flip = norms_flip = None
    if flip_features_path is not None:
        raw_flip = read_array(flip_features_path, key)
        if raw_flip.shape != raw.shape:
            raise InputFormatError(
                f"Expected mirrored features of the same shape, but {flip_features_path} has"
                f" shape {raw_flip.shape} and {features_path} has {raw.shape}"
            )
        features_flip, norms_flip = normalize_rows(raw_flip, source=str(flip_features_path))
    # HDF5 cannot always recover from a write the disk refuses: check the space first
    arrays = (features, norms, features_flip, norms_flip)
    n_bytes = sum(a.nbytes for a in arrays if a is not None) + sum(len(i) + 16 for i in ids)
    check_free_space(output, n_bytes + (1 << 20))
    return create_store(
        output,
        ids,
        features,
        norms,
        features_flip=features_flip,
        norms_flip=norms_flip,
        model=f"imported:{features_path.name}",
        model_sha256=file_sha256(features_path),
        preprocessing={"name": "imported", "source": features_path.name},
        compression=compression,
        overwrite=overwrite,
    )
