"""Protocol files for the demo's held-out classes, in the official formats.

The demo evaluates models on classes they never saw in training through the same parsers
as the real benchmarks: an LFW-format ``pairs.txt`` (10 sets of matched then mismatched
lines, keys ``<class>/<class>_<NNNN>.jpg``) and an IJB-A-format 1:1 folder
(``IJB-A_11_sets/split<N>/verify_metadata_<N>.csv`` with the 25-column header and CRLF line
ends, ``verify_comparisons_<N>.csv`` without a header). Everything is a function of the
seed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from protocols.ijba import METADATA_COLUMNS

IJBA_COLUMNS = METADATA_COLUMNS  # the release's 25 columns, in order


def write_lfw_pairs(
    path: Path,
    images: Mapping[str, int],
    *,
    n_sets: int = 10,
    per_set: int = 300,
    seed: int = 0,
) -> Path:
    """Write an LFW View 2 format pairs file over ``images`` (class name -> image count).

    Each set holds ``per_set`` matched pairs (two distinct images of one class) then
    ``per_set`` mismatched pairs (images of two classes); no pair repeats within the file.
    """
    rng = np.random.default_rng(seed)
    names = sorted(images)
    matched = [
        (c, a, b) for c in names for a, b in itertools.combinations(range(1, images[c] + 1), 2)
    ]
    need = n_sets * per_set
    if len(matched) < need:
        raise ValueError(f"only {len(matched)} matched pairs available, {need} needed")
    pick = rng.choice(len(matched), size=need, replace=False)
    genuine = [matched[i] for i in pick]
    seen: set[tuple[str, int, str, int]] = set()
    impostor: list[tuple[str, int, str, int]] = []
    while len(impostor) < need:
        c1, c2 = rng.choice(len(names), size=2, replace=False)
        n1, n2 = names[int(c1)], names[int(c2)]
        pair = (n1, int(rng.integers(1, images[n1] + 1)), n2, int(rng.integers(1, images[n2] + 1)))
        if pair not in seen:
            seen.add(pair)
            impostor.append(pair)
    lines = [f"{n_sets}\t{per_set}"]
    for s in range(n_sets):
        lines += [f"{c}\t{a}\t{b}" for c, a, b in genuine[s * per_set : (s + 1) * per_set]]
        lines += [f"{a}\t{i}\t{b}\t{j}" for a, i, b, j in impostor[s * per_set : (s + 1) * per_set]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_ijba_11(
    root: Path,
    images: Mapping[str, Sequence[str]],
    image_size: tuple[int, int],
    *,
    n_splits: int = 10,
    templates_per_class: int = 12,
    max_images_per_template: int = 4,
    impostors_per_template: int = 8,
    seed: int = 0,
) -> Path:
    """Write ``root/IJB-A_11_sets`` over ``images`` (class -> relative image paths).

    Per split: ``templates_per_class`` templates per class of 1 to
    ``max_images_per_template`` images (each image its own media, a still), the face box
    the whole image; every genuine template pair of a class and ``impostors_per_template``
    impostor comparisons per template. An image has one sighting id in every split, so it
    is one store item ``<FILE>#<SIGHTING_ID>``.
    """
    rng = np.random.default_rng(seed)
    classes = sorted(images)
    sighting = {path: i + 1 for i, path in enumerate(p for c in classes for p in images[c])}
    height, width = image_size
    for split in range(1, n_splits + 1):
        folder = root / "IJB-A_11_sets" / f"split{split}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = [",".join(IJBA_COLUMNS)]
        templates: list[tuple[int, int]] = []  # (template id, class index)
        tid = split * 100_000
        for k, c in enumerate(classes):
            for _ in range(templates_per_class):
                tid += 1
                n = int(rng.integers(1, max_images_per_template + 1))
                for path in rng.choice(images[c], size=n, replace=False):
                    fields = [""] * len(IJBA_COLUMNS)
                    fields[:10] = [
                        str(tid),
                        str(k + 1),
                        str(path),
                        str(sighting[path]),
                        str(sighting[path]),
                        "",
                        "0",
                        "0",
                        str(width),
                        str(height),
                    ]
                    rows.append(",".join(fields))
                templates.append((tid, k))
        (folder / f"verify_metadata_{split}.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())
        comparisons = [
            (a, b) for (a, ka), (b, kb) in itertools.combinations(templates, 2) if ka == kb
        ]
        listed = {frozenset(c) for c in comparisons}
        for a, ka in templates:
            others = [b for b, kb in templates if kb != ka]
            for b in rng.choice(others, size=impostors_per_template, replace=False):
                if frozenset((a, int(b))) not in listed:  # each comparison once
                    listed.add(frozenset((a, int(b))))
                    comparisons.append((a, int(b)))
        lines = [f"{a},{b}" for a, b in comparisons]
        (folder / f"verify_comparisons_{split}.csv").write_bytes(
            ("\r\n".join(lines) + "\r\n").encode()
        )
    return root
