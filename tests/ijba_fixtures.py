"""Synthetic IJB-A protocol folders in the exact official format, and what they contain.

The real IJB-A metadata is licensed by NIST and is never committed; these files copy its
format instead: ``IJB-A_11_sets/splitN/{train_N,verify_metadata_N,verify_comparisons_N}.csv``
and ``IJB-A_1N_sets/splitN/{train_N,search_gallery_N,search_probe_N}.csv``; metadata with
the release's 25-column header in its order, CRLF line ends (by default), most optional
columns empty; FILE ``img/<media>.jpg`` for stills and ``frame/<media>_<frame>.png`` for
video frames; templates mixing stills and frames; a frame listed twice in one template
under two sighting ids with slightly different boxes; comparisons ``tid1,tid2`` without a
header; template ids reused across splits for other subjects and items.

Usage (tests/ is on ``sys.path`` under pytest's default import mode)::

    from ijba_fixtures import write_ijba
    record = write_ijba(tmp_path / "ijba", n_splits=3)
    record["keys"]          # every store id the protocol needs, sorted
    record["key_subject"]   # store id -> subject, to make features per subject
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

COLUMNS = (
    "TEMPLATE_ID", "SUBJECT_ID", "FILE", "MEDIA_ID", "SIGHTING_ID", "FRAME",
    "FACE_X", "FACE_Y", "FACE_WIDTH", "FACE_HEIGHT",
    "RIGHT_EYE_X", "RIGHT_EYE_Y", "LEFT_EYE_X", "LEFT_EYE_Y", "NOSE_BASE_X", "NOSE_BASE_Y",
    "FACE_YAW", "FOREHEAD_VISIBLE", "EYES_VISIBLE", "NOSE_MOUTH_VISIBLE", "INDOOR",
    "GENDER", "SKIN_TONE", "AGE", "FACIAL_HAIR",
)  # fmt: skip

Box = tuple[float, float, float, float]
# A face: (FILE, MEDIA_ID, SIGHTING_ID, FRAME or None, box)
Face = tuple[str, int, int, int | None, Box]


def _num(value: float) -> str:
    """Numbers as the release writes them: integers plain, halves with one decimal."""
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def _make_world(rng: random.Random, subjects: list[int]) -> dict[int, list[list[Face]]]:
    """Per subject: its media (a still = one face; a video = several frames' faces)."""
    media_ids = iter(rng.sample(range(1000, 90000), 6 * len(subjects)))
    sighting = itertools.count(rng.randrange(100, 1000))
    world: dict[int, list[list[Face]]] = {}

    def box() -> Box:
        return (
            rng.randrange(-20, 800) / 2,
            rng.randrange(0, 800) / 2,
            rng.randrange(60, 400) / 2,
            rng.randrange(60, 400) / 2,
        )

    for s_index, subject in enumerate(subjects):
        media: list[list[Face]] = []
        for _ in range(2):  # stills
            m = next(media_ids)
            media.append([(f"img/{m}.jpg", m, next(sighting), None, box())])
        for v in range(1 + s_index % 2):  # videos
            m = next(media_ids)
            frames = sorted(rng.sample(range(0, 3000, 30), 3))
            faces = [(f"frame/{m}_{f:05d}.png", m, next(sighting), f, box()) for f in frames]
            if v == 0:  # the release lists some frames twice under two sighting ids
                file, _, _, frame, (x, y, w, h) = faces[0]
                faces.insert(1, (file, m, next(sighting), frame, (x + 1.5, y - 1, w + 2, h)))
            media.append(faces)
        world[subject] = media
    return world


def _template(rng: random.Random, media: list[list[Face]], mixed: bool) -> list[Face]:
    """The faces of one template: a still and a video when ``mixed``, else 1-2 media."""
    stills = [m for m in media if m[0][3] is None]
    videos = [m for m in media if m[0][3] is not None]
    chosen = [rng.choice(stills), rng.choice(videos)] if mixed else rng.sample(media, 2)
    chosen = chosen if mixed or rng.random() < 0.5 else chosen[:1]
    faces: list[Face] = []
    for m in chosen:
        if len(m) == 1:
            faces += m
        else:  # a video: all its frames, or the later ones only
            faces += m if rng.random() < 0.5 else m[2:]
    return faces


def _row(rng: random.Random, tid: int, subject: int, face: Face) -> list[str]:
    file, media, sighting, frame, (x, y, w, h) = face
    row = [str(tid), str(subject), file, str(media), str(sighting)]
    row += ["" if frame is None else str(frame), _num(x), _num(y), _num(w), _num(h)]
    rest = [""] * 15
    if frame is None and rng.random() < 0.6:  # eyes and nose on some stills
        rest[:6] = [_num(v) for v in (x + w / 3, y + h / 3, x + 2 * w / 3, y + h / 3)] + [
            _num(x + w / 2),
            _num(y + h / 2),
        ]
    if rng.random() < 0.3:  # attributes on a few rows
        rest[6:] = [f"{rng.uniform(-60, 60):.4f}", "1", "1", "0", "0", "1", "3", "2", "0"]
    return row + rest


def _write_metadata(
    path: Path,
    rng: random.Random,
    templates: list[dict[str, Any]],
    eol: str,
    bom: bool,
    repeated_rows: int,
) -> int:
    """Write templates (rows contiguous, shuffled order) plus exact copies; return copies."""
    rows = [_row(rng, t["id"], t["subject"], face) for t in templates for face in t["faces"]]
    for _ in range(min(repeated_rows, len(rows))):
        source = rng.randrange(len(rows))
        rows.insert(rng.randrange(source + 1, len(rows) + 1), list(rows[source]))
    text = eol.join([",".join(COLUMNS)] + [",".join(r) for r in rows]) + eol
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("ascii"))
    return min(repeated_rows, len(rows))


def _as_record(templates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": t["id"],
            "subject": t["subject"],
            "keys": [f"{f[0]}#{f[2]}" for f in t["faces"]],
            "media": [f[1] for f in t["faces"]],
        }
        for t in templates
    ]


def _template_counts(templates: list[dict[str, Any]]) -> dict[str, int]:
    keys = [k for t in templates for k in t["keys"]]
    return {
        "n_templates": len(templates),
        "n_subjects": len({t["subject"] for t in templates}),
        "n_media": len({m for t in templates for m in t["media"]}),
        "n_rows": len(keys),
        "n_items": len(set(keys)),
    }


def write_ijba(
    root: Path,
    *,
    n_splits: int = 10,
    n_subjects: int = 30,
    templates_per_subject: int = 3,
    seed: int = 0,
    crlf: bool = True,
    with_1n: bool = True,
    repeated_rows: int = 0,
    bom: bool = False,
    impostors_per_genuine: int = 3,
    gallery_fraction: float = 0.7,
    probes_per_subject: int = 2,
) -> dict[str, Any]:
    """Write an IJB-A-format protocol folder under ``root`` and return what it holds.

    Parameters
    ----------
    root : Path
        Created if needed; receives ``IJB-A_11_sets/`` (and ``IJB-A_1N_sets/``).
    n_splits, n_subjects, templates_per_subject
        Sizes; every split holds ``n_subjects * templates_per_subject`` 1:1 templates.
    seed : int
        Everything is a function of it.
    crlf, bom
        Line ends CRLF (as the release) or LF; a UTF-8 BOM before each metadata header.
    with_1n : bool
        Also write ``IJB-A_1N_sets/``: a gallery of one template per subject for
        ``gallery_fraction`` of the subjects, ``probes_per_subject`` probes per subject (the
        others' probes are non-mated).
    repeated_rows : int
        Exact copies of earlier rows added to every metadata file read by the parser.

    Returns
    -------
    dict
        ``root``; ``files`` (relative paths the parser reads, in its order); ``keys``
        (sorted store ids of every file read); ``boxes`` (key -> (x, y, w, h));
        ``key_subject`` (key -> subject); ``splits``: per split ``split``, ``verify``,
        ``gallery``, ``probe`` (lists of templates ``{"id", "subject", "keys", "media"}``
        in file order; gallery/probe None without 1:N), ``comparisons`` (``(tid1, tid2,
        is_same)`` in file order) and ``repeated_rows``; ``counts`` in the shape of
        ``protocols.ijba.load(...).counts``, computed here independently.
    """
    rng = random.Random(seed)
    eol = "\r\n" if crlf else "\n"
    subjects = rng.sample(range(1, 20 * n_subjects + 1), n_subjects)
    world = _make_world(rng, subjects)
    boxes = {f"{f[0]}#{f[2]}": f[4] for m in world.values() for media in m for f in media}
    key_subject = {f"{f[0]}#{f[2]}": s for s, m in world.items() for media in m for f in media}
    n_templates = n_subjects * templates_per_subject
    n_search = n_subjects * (1 + probes_per_subject)
    files: list[str] = []
    splits: list[dict[str, Any]] = []
    per_split: list[dict[str, int]] = []
    for number in range(1, n_splits + 1):
        # ids drawn from a pool twice the size, so splits reuse ids for other templates
        ids = iter(rng.sample(range(1, 2 * n_templates + 1), n_templates))
        verify = [
            {"id": next(ids), "subject": s, "faces": _template(rng, world[s], k == 0)}
            for s in subjects
            for k in range(templates_per_subject)
        ]
        rng.shuffle(verify)
        split_dir = root / "IJB-A_11_sets" / f"split{number}"
        rel = f"IJB-A_11_sets/split{number}"
        _write_metadata(split_dir / f"train_{number}.csv", rng, verify[:3], eol, bom, 0)
        repeated = _write_metadata(
            split_dir / f"verify_metadata_{number}.csv", rng, verify, eol, bom, repeated_rows
        )
        genuine = [
            (a["id"], b["id"])
            for a, b in itertools.combinations(verify, 2)
            if a["subject"] == b["subject"]
        ]
        n_impostor = min(
            impostors_per_genuine * len(genuine),
            (len(verify) ** 2 - n_subjects * templates_per_subject**2) // 2,
        )
        impostors: dict[tuple[int, int], None] = {}
        while len(impostors) < n_impostor:
            a, b = rng.sample(verify, 2)
            if a["subject"] != b["subject"] and (b["id"], a["id"]) not in impostors:
                impostors[(a["id"], b["id"])] = None
        pairs = [(a, b, True) for a, b in genuine]
        pairs += [(a, b, False) for a, b in impostors]
        rng.shuffle(pairs)
        lines = [f"{a},{b}" for a, b, _ in pairs]
        (split_dir / f"verify_comparisons_{number}.csv").write_bytes(
            (eol.join(lines) + eol).encode("ascii")
        )
        files += [f"{rel}/verify_metadata_{number}.csv", f"{rel}/verify_comparisons_{number}.csv"]
        record: dict[str, Any] = {
            "split": number,
            "verify": _as_record(verify),
            "comparisons": pairs,
            "gallery": None,
            "probe": None,
        }
        counts: dict[str, int] = {"split": number, **_template_counts(record["verify"])}
        counts.update(
            n_comparisons=len(pairs),
            n_genuine=len(genuine),
            n_impostor=n_impostor,
            n_self_comparisons=0,
            n_repeated_comparisons=0,
        )
        if with_1n:
            search_ids = iter(rng.sample(range(1, 3 * n_search + 1), n_search))
            in_gallery = subjects[: round(gallery_fraction * n_subjects)]
            gallery = [
                {"id": next(search_ids), "subject": s, "faces": _template(rng, world[s], True)}
                for s in in_gallery
            ]
            probe = [
                {"id": next(search_ids), "subject": s, "faces": _template(rng, world[s], False)}
                for s in subjects
                for _ in range(probes_per_subject)
            ]
            rng.shuffle(probe)
            search_dir = root / "IJB-A_1N_sets" / f"split{number}"
            srel = f"IJB-A_1N_sets/split{number}"
            _write_metadata(search_dir / f"train_{number}.csv", rng, verify[:2], eol, bom, 0)
            for name, templates in (("gallery", gallery), ("probe", probe)):
                repeated += _write_metadata(
                    search_dir / f"search_{name}_{number}.csv",
                    rng,
                    templates,
                    eol,
                    bom,
                    repeated_rows,
                )
                files.append(f"{srel}/search_{name}_{number}.csv")
                record[name] = _as_record(templates)
            mated = sum(t["subject"] in set(in_gallery) for t in probe)
            counts.update(
                n_gallery_templates=len(gallery),
                n_probe_templates=len(probe),
                n_mated_probes=mated,
                n_nonmated_probes=len(probe) - mated,
                n_gallery_rows=sum(len(t["faces"]) for t in gallery),
                n_probe_rows=sum(len(t["faces"]) for t in probe),
            )
        counts["repeated_rows_dropped"] = repeated
        record["repeated_rows"] = repeated
        splits.append(record)
        per_split.append(counts)

    every = [
        t
        for s in splits
        for part in ("verify", "gallery", "probe")
        if s[part] is not None
        for t in s[part]
    ]
    keys = sorted({k for t in every for k in t["keys"]})
    total: dict[str, int] = {"n_splits": n_splits, "n_splits_found": n_splits}
    for counts in per_split:
        for name, value in counts.items():
            if name != "split":
                total[name] = total.get(name, 0) + value
    total.update(
        n_subjects=len({t["subject"] for t in every}),
        n_media=len({m for t in every for m in t["media"]}),
        n_items=len(keys),
    )
    return {
        "root": root,
        "files": files,
        "keys": keys,
        "boxes": {k: boxes[k] for k in keys},
        "key_subject": {k: key_subject[k] for k in keys},
        "splits": splits,
        "counts": {"splits": per_split, "total": total},
    }
