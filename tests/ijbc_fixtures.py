"""Synthetic IJB-B / IJB-C protocol folders in the exact formats of insightface's meta files.

The real metadata is licensed: it is never committed, and nothing here is derived from it.
The files follow the release's shapes: ``<variant>_face_tid_mid.txt`` (``1.jpg 1 69544``:
image name, template id, media id), ``<variant>_template_pair_label.txt`` (``1 11065 1``),
``<variant>_name_5pts_score.txt`` (``1.jpg 46.060 62.026 ... 0.999``: name, 5 x/y points with
three decimals, detector score), single spaces and LF line ends; the 1:N files are CSVs with
a header, one row per face sighting on the original media (FILENAME is not a loose crop).

``write_ijbc`` writes a small folder and returns what it wrote, for comparisons in tests;
``write_ijbc_full_size`` writes files of the release's sizes (IJB-C: 469,375 images, 23,124
templates, 15,658,489 pairs) with vectorized formatting, for benchmarks.

Import as ``import ijbc_fixtures`` from a test module in ``tests/`` (pytest puts the test's
folder on ``sys.path``; there is no conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

GALLERIES = {"ijbc": ("G1", "G2"), "ijbb": ("S1", "S2")}

#: IJB-C's 1:N CSV columns (NIST's IJB-C metadata layout).
IJBC_CSV_HEADER = (
    "TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT,"
    "FRAME_NUM,FACIAL_HAIR,AGE,INDOOR_OUTDOOR,SKINTONE,GENDER,YAW,ROLL,"
    + ",".join(f"OCC{i}" for i in range(1, 19))
)
#: IJB-B's 1:N CSV columns (the IJB-B 2.0 layout).
IJBB_CSV_HEADER = (
    "TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT,"
    "RIGHT_EYE_X,RIGHT_EYE_Y,LEFT_EYE_X,LEFT_EYE_Y,NOSE_X,NOSE_Y"
)


def file_names(variant: str) -> dict[str, str]:
    """Kind -> file name: tid_mid, pairs, landmarks, the two galleries, probe_mixed."""
    first, second = GALLERIES[variant]
    return {
        "tid_mid": f"{variant}_face_tid_mid.txt",
        "pairs": f"{variant}_template_pair_label.txt",
        "landmarks": f"{variant}_name_5pts_score.txt",
        first: f"{variant}_1N_gallery_{first}.csv",
        second: f"{variant}_1N_gallery_{second}.csv",
        "probe_mixed": f"{variant}_1N_probe_mixed.csv",
    }


def _write(path: Path, lines: list[str], eol: str, blank_lines: bool) -> None:
    if blank_lines and len(lines) > 1:
        middle = len(lines) // 2
        lines = [*lines[:middle], "", *lines[middle:], ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + eol for line in lines).encode("utf-8"))


def write_ijbc(
    root: str | Path,
    *,
    variant: str = "ijbc",
    n_subjects: int = 6,
    templates_per_subject: int = 3,
    images_per_template: int = 3,
    impostors_per_probe: int = 3,
    seed: int = 0,
    with_1n: bool = True,
    crlf: bool = False,
    blank_lines: bool = False,
    landmark_order: str = "same",
    repeated_lines: int = 0,
    repeated_landmark_lines: int = 0,
    meta_dir: str = "meta",
) -> dict[str, Any]:
    """Write a small IJB-B/C protocol folder under ``root`` and return what it wrote.

    Subjects are split in two halves, the galleries (G1/G2 or S1/S2); a subject's first
    template is its gallery template, the others are probes (``probe_mixed``). Each probe is
    paired with its subject's gallery template (label 1) and with ``impostors_per_probe``
    other gallery templates (label 0). A template's images: the first two share one media (a
    video's frames), each further image is a still of its own. Templates are written in a
    random order; image names are ``1.jpg``, ``2.jpg``, ... in file order.

    Parameters
    ----------
    landmark_order : {"same", "shuffled"}
        The landmarks file's line order: as ``tid_mid`` (the release) or shuffled.
    repeated_lines, repeated_landmark_lines : int
        Append exact copies of the first lines of ``tid_mid`` / the landmarks file.
    crlf, blank_lines : bool
        CRLF line ends; a blank line in the middle and at the end of every file.
    meta_dir : str
        Folder of the files under ``root`` ("" to put them directly in ``root``).

    Returns
    -------
    dict
        ``files`` (kind -> path relative to root, only those written), ``images`` [(name,
        template, media)] in file order (without repeats), ``templates`` {tid: [store ids]},
        ``media`` {tid: [media ids]}, ``scores`` and ``landmarks`` {store id: value},
        ``subjects`` {tid: subject}, ``pairs`` [(tid1, tid2, label)], ``galleries``
        {name: {tid: subject}}, ``probes`` {tid: subject}, ``counts`` (the loader's expected
        counts) and the arguments.
    """
    if with_1n and templates_per_subject < 2:
        raise ValueError("1:N needs a gallery and a probe template per subject")
    if images_per_template < 1:
        raise ValueError("a template needs an image")
    rng = np.random.default_rng(seed)
    root = Path(root)
    n_templates = n_subjects * templates_per_subject
    subjects = [int(s) for s in rng.choice(np.arange(1, 20 * n_subjects + 50), n_subjects, False)]
    tids = [int(t) for t in rng.choice(np.arange(1, 60 * n_templates + 100), n_templates, False)]
    owner = {tid: subjects[i // templates_per_subject] for i, tid in enumerate(tids)}
    gallery_of = {subjects[i]: tids[i * templates_per_subject] for i in range(n_subjects)}
    probe_tids = [t for t in tids if gallery_of[owner[t]] != t]
    first_name, second_name = GALLERIES[variant]
    half = (n_subjects + 1) // 2
    galleries: dict[str, dict[int, int]] = {
        first_name: {gallery_of[s]: s for s in subjects[:half]},
        second_name: {gallery_of[s]: s for s in subjects[half:]},
    }

    images: list[tuple[str, int, int]] = []
    templates: dict[int, list[str]] = {}
    media: dict[int, list[int]] = {}
    next_media = int(rng.integers(100, 70_000))
    for tid in [tids[i] for i in rng.permutation(n_templates)]:
        video = next_media
        for j in range(images_per_template):
            if j >= 2:
                next_media += 1
            mid = video if j < 2 else next_media
            name = f"{len(images) + 1}.jpg"
            images.append((name, tid, mid))
            templates.setdefault(tid, []).append(f"loose_crop/{name}")
            media.setdefault(tid, []).append(mid)
        next_media += 1 + int(rng.integers(0, 5))

    point_text = {name: [f"{v:.3f}" for v in rng.uniform(20, 100, 10)] for name, _, _ in images}
    score_text = {name: f"{rng.uniform(0.1, 1.0):.3f}" for name, _, _ in images}

    pairs: list[tuple[int, int, int]] = []
    for probe in probe_tids:
        pairs.append((gallery_of[owner[probe]], probe, 1))
        others = [gallery_of[s] for s in subjects if s != owner[probe]]
        chosen = rng.choice(len(others), min(impostors_per_probe, len(others)), replace=False)
        pairs += [(others[int(k)], probe, 0) for k in chosen]

    eol = "\r\n" if crlf else "\n"
    meta = root / meta_dir if meta_dir else root
    names = file_names(variant)
    files = {}

    def rel(kind: str) -> str:
        files[kind] = f"{meta_dir}/{names[kind]}" if meta_dir else names[kind]
        return files[kind]

    tid_lines = [f"{name} {tid} {mid}" for name, tid, mid in images]
    _write(root / rel("tid_mid"), tid_lines + tid_lines[:repeated_lines], eol, blank_lines)
    order = [name for name, _, _ in images]
    if landmark_order == "shuffled":
        order = [order[i] for i in rng.permutation(len(order))]
    pts_lines = [f"{n} {' '.join(point_text[n])} {score_text[n]}" for n in order]
    pts_lines += pts_lines[:repeated_landmark_lines]
    _write(root / rel("landmarks"), pts_lines, eol, blank_lines)
    _write(root / rel("pairs"), [f"{a} {b} {label}" for a, b, label in pairs], eol, blank_lines)

    probes = {tid: owner[tid] for tid in sorted(probe_tids)}
    if with_1n:
        header = IJBC_CSV_HEADER if variant == "ijbc" else IJBB_CSV_HEADER
        width = header.count(",") + 1
        for kind, members in [*galleries.items(), ("probe_mixed", probes)]:
            rows = [header]
            for tid, subject in members.items():
                for j, mid in enumerate(media[tid]):
                    original = f"frames/{mid}_{j}.png" if j < 2 else f"img/{mid}.jpg"
                    box = rng.integers(0, 400, 4)
                    fields = [str(tid), str(subject), original, str(mid + 7), *map(str, box)]
                    rows.append(",".join(fields + [""] * (width - len(fields))))
            _write(root / rel(kind), rows, eol, blank_lines=False)
    meta.mkdir(parents=True, exist_ok=True)

    n_genuine = sum(label for _, _, label in pairs)
    counts: dict[str, Any] = {
        "image_lines": len(images) + repeated_lines,
        "images": len(images),
        "templates": n_templates,
        "media": len({mid for _, _, mid in images}),
        "landmark_lines": len(images) + repeated_landmark_lines,
        "repeated_lines_dropped": {
            "tid_mid": repeated_lines,
            "landmarks": repeated_landmark_lines,
        },
        "pairs": len(pairs),
        "genuine": n_genuine,
        "impostor": len(pairs) - n_genuine,
    }
    if with_1n:
        counts["identification"] = {
            "galleries": {
                name: {
                    "templates": len(members),
                    "subjects": len(members),
                    "rows": sum(len(templates[t]) for t in members),
                    "mated_probes": sum(s in members.values() for s in probes.values()),
                    "non_mated_probes": sum(s not in members.values() for s in probes.values()),
                }
                for name, members in galleries.items()
            },
            "probe_templates": len(probes),
            "probe_rows": sum(len(templates[t]) for t in probes),
        }
    return {
        "root": root,
        "variant": variant,
        "files": files,
        "images": images,
        "templates": templates,
        "media": media,
        "scores": {f"loose_crop/{n}": float(score_text[n]) for n in score_text},
        "landmarks": {
            f"loose_crop/{n}": tuple(float(v) for v in point_text[n]) for n in point_text
        },
        "subjects": owner,
        "pairs": pairs,
        "galleries": galleries,
        "probes": probes,
        "counts": counts,
        "with_1n": with_1n,
    }


def write_subject_store(
    record: dict[str, Any], store: str | Path, *, dim: int, weight: float, seed: int
) -> Path:
    """A store of every image :func:`write_ijbc` wrote (its returned ``record``): each
    feature ``weight`` x its subject's random direction plus unit Gaussian noise, so that
    genuine pairs score high and impostors spread around 0."""
    from facebench.store import create_store, normalize_rows

    keys = sorted(record["scores"])
    subject_of = {
        f"loose_crop/{name}": record["subjects"][tid] for name, tid, _ in record["images"]
    }
    rng = np.random.default_rng(seed)
    base = {s: rng.standard_normal(dim) for s in sorted(set(subject_of.values()))}
    feats = np.stack([base[subject_of[k]] * weight + rng.standard_normal(dim) for k in keys])
    unit, norms = normalize_rows(feats)
    create_store(store, keys, unit, norms, model="m")
    return Path(store)


def _ascii(segments: list[np.ndarray | bytes | tuple[np.ndarray, int]]) -> bytes:
    """Rows of text from columns: an int array (decimal), ``(array, width)`` (zero-padded to
    ``width`` digits) or literal bytes; the rows are concatenated."""
    n = next(
        s.shape[0] if isinstance(s, np.ndarray) else s[0].shape[0]
        for s in segments
        if not isinstance(s, bytes)
    )
    blocks: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for segment in segments:
        if isinstance(segment, bytes):
            blocks.append(np.broadcast_to(np.frombuffer(segment, np.uint8), (n, len(segment))))
            masks.append(np.ones((n, len(segment)), dtype=bool))
            continue
        values, pad = (segment, 0) if isinstance(segment, np.ndarray) else segment
        values = values.astype(np.int64)
        width = max(pad, len(str(int(values.max()))))
        digits = np.empty((n, width), dtype=np.uint8)
        rest = values.copy()
        for k in range(width - 1, -1, -1):
            digits[:, k] = 48 + rest % 10
            rest //= 10
        n_digits = np.maximum(1, np.floor(np.log10(np.maximum(values, 1))).astype(np.int64) + 1)
        n_digits = np.maximum(n_digits, pad)
        blocks.append(digits)
        masks.append(np.arange(width)[None, :] >= (width - n_digits)[:, None])
    text = np.concatenate(blocks, axis=1)
    return text[np.concatenate(masks, axis=1)].tobytes()


def write_ijbc_full_size(
    root: str | Path, *, variant: str = "ijbc", seed: int = 0, with_1n: bool = True
) -> dict[str, int]:
    """Write meta files at the release's sizes, for benchmarks (seconds to write, ~300 MB).

    IJB-C: 469,375 image lines, 23,124 templates, 15,658,489 pairs of which 19,557 genuine,
    3,531 gallery templates (one per subject, G1 and G2 halves) and 19,593 probes of those
    subjects (IJB-B: 227,630 / 12,115 / 8,010,270 / 10,270 / 1,845). Pair labels agree with
    the subjects. Returns the sizes written.
    """
    sizes = {
        "ijbc": (469_375, 23_124, 15_658_489, 19_557, 3_531),
        "ijbb": (227_630, 12_115, 8_010_270, 10_270, 1_845),
    }[variant]
    n_images, n_templates, n_pairs, n_genuine, n_gallery = sizes
    rng = np.random.default_rng(seed)
    meta = Path(root) / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    names = file_names(variant)
    tids = np.sort(rng.choice(np.arange(1, 200_000), n_templates, replace=False))
    template_of = np.sort(np.concatenate([tids, rng.choice(tids, n_images - n_templates)]))
    media_of = rng.integers(1, 150_000, n_images)
    number = np.arange(1, n_images + 1)
    (meta / names["tid_mid"]).write_bytes(
        _ascii([number, b".jpg ", template_of, b" ", media_of, b"\n"])
    )
    points = rng.integers(10_000, 110_000, (n_images, 11))
    points[:, 10] = rng.integers(100, 1000, n_images)
    segments: list[np.ndarray | bytes | tuple[np.ndarray, int]] = [number, b".jpg"]
    for k in range(10):
        segments += [b" ", points[:, k] // 1000, b".", (points[:, k] % 1000, 3)]
    segments += [b" 0.", (points[:, 10], 3), b"\n"]
    (meta / names["landmarks"]).write_bytes(_ascii(segments))

    # gallery template k belongs to subject k; each probe to a random gallery subject
    shuffled = rng.permutation(tids)
    gallery, probes = shuffled[:n_gallery], np.sort(shuffled[n_gallery:])
    probe_subject = rng.integers(0, n_gallery, probes.size)
    pick = rng.integers(0, probes.size, n_pairs)
    same = np.zeros(n_pairs, dtype=bool)
    same[rng.choice(n_pairs, n_genuine, replace=False)] = True
    other = (probe_subject[pick] + rng.integers(1, n_gallery, n_pairs)) % n_gallery
    left = gallery[np.where(same, probe_subject[pick], other)]
    label = same.astype(np.int64)
    (meta / names["pairs"]).write_bytes(_ascii([left, b" ", probes[pick], b" ", label, b"\n"]))
    if with_1n:
        subject = np.zeros(tids.max() + 1, dtype=np.int64)
        subject[gallery] = np.arange(n_gallery) + 1
        subject[probes] = probe_subject + 1
        first, second = GALLERIES[variant]
        header = (IJBC_CSV_HEADER if variant == "ijbc" else IJBB_CSV_HEADER).encode() + b"\n"
        half = n_gallery // 2
        members = {
            first: gallery[:half],
            second: gallery[half:],
            "probe_mixed": probes,
        }
        for kind, chosen in members.items():
            rows = np.flatnonzero(np.isin(template_of, chosen))
            box = rng.integers(0, 500, (rows.size, 4))
            columns = [template_of[rows], subject[template_of[rows]], number[rows], media_of[rows]]
            text = _ascii(
                [columns[0], b",", columns[1], b",img/", columns[2], b".jpg,", columns[3]]
                + [part for k in range(4) for part in (b",", box[:, k])]
                + [b"\n"]
            )
            (meta / names[kind]).write_bytes(header + text)
    return {"images": n_images, "templates": n_templates, "pairs": n_pairs, "genuine": n_genuine}
