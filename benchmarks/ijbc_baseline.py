"""The baseline of the IJB-C 1:1 benchmark: the common script's algorithm, written here.

It follows insightface's ``recognition/arcface_torch/eval_ijbc.py`` (the script most
papers' IJB-B/C numbers come from) step by step, with the options that make it compute
what ``facebench verify --pooling media`` computes: ``use_norm_score = False`` (each
image's feature is L2-normalized first; the store's rows already are),
``use_detector_score = False``, ``use_flip_test = False``:

1. ``read_template_media_list`` / ``read_template_pair_list``: the meta files as integer
   columns. insightface reads them with ``pandas.read_csv(sep=' ', header=None)``; pandas
   is not a facebench dependency, so numpy's C parser reads them here
   (``np.fromstring(sep=' ')``, no slower than pandas' C reader on these files).
2. The features: the whole (N, 512) float32 array in memory (insightface keeps the model's
   outputs; here they are read from the store once).
3. ``image2template_feature``: for every template id (``np.unique``), its rows by a full
   scan ``np.where(templates == uqt)``; for each of its media (``np.unique`` with counts) the
   mean of the media's rows; the media vectors are summed; the (T, 512) float64 result is
   L2-normalized (``sklearn.preprocessing.normalize``). The sum of media means has the
   direction of their mean, so after normalization this is facebench's ``media`` pooling.
4. ``verification``: pairs in batches of 100,000; each batch gathers both templates'
   float64 rows and takes ``np.sum(feat1 * feat2, -1)``.
5. ``sklearn.metrics.roc_curve(label, score)``; for each target FAR the point whose FPR is
   nearest (reversed order, first minimum), TAR there (insightface's table).
6. The scores are saved (``np.save``) and the TARs written as JSON.

Run as a worker of :mod:`benchmarks.ijbc_bench` (its own process, so that its peak memory
is its own).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FAR_TARGETS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
BATCH = 100_000


def read_template_media_list(path: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``image_name template_id media_id`` lines -> the two integer columns."""
    lines = path.read_text(encoding="utf-8").split()
    templates = np.array(lines[1::3], dtype=np.int64)
    medias = np.array(lines[2::3], dtype=np.int64)
    return templates, medias


def read_template_pair_list(
    path: Path,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``t1 t2 label`` lines -> three integer columns."""
    values = np.fromstring(path.read_bytes(), dtype=np.int64, sep=" ").reshape(-1, 3)
    return values[:, 0], values[:, 1], values[:, 2]


def read_features(store: Path) -> npt.NDArray[np.float32]:
    """The store's features, whole (the store's rows are in tid_mid order: see the
    benchmark's data generator)."""
    import h5py

    with h5py.File(store, "r") as handle:
        features: npt.NDArray[np.float32] = handle["features"][...]
    return features


def image2template_feature(
    img_feats: npt.NDArray[np.float32],
    templates: npt.NDArray[np.int64],
    medias: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """insightface's loop: one full scan per template, one mean per media (``np.mean`` of
    float32 rows is float32, as in the script: its templates differ from float64 means by
    about 1e-8)."""
    from sklearn.preprocessing import normalize

    unique_templates = np.unique(templates)
    template_feats = np.zeros((len(unique_templates), img_feats.shape[1]))
    for count_template, uqt in enumerate(unique_templates):
        (ind_t,) = np.where(templates == uqt)
        face_norm_feats = img_feats[ind_t]
        face_medias = medias[ind_t]
        unique_medias, unique_media_counts = np.unique(face_medias, return_counts=True)
        media_norm_feats = []
        for u, ct in zip(unique_medias, unique_media_counts, strict=True):
            (ind_m,) = np.where(face_medias == u)
            if ct == 1:
                media_norm_feats += [face_norm_feats[ind_m]]
            else:  # image features from the same video are aggregated into one feature
                media_norm_feats += [np.mean(face_norm_feats[ind_m], axis=0, keepdims=True)]
        media_norm_feats_array = np.array(media_norm_feats)
        template_feats[count_template] = np.sum(media_norm_feats_array, axis=0)
    template_norm_feats = normalize(template_feats)
    return template_norm_feats, unique_templates


def verification(
    template_norm_feats: npt.NDArray[np.float64],
    unique_templates: npt.NDArray[np.int64],
    p1: npt.NDArray[np.int64],
    p2: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """insightface's batched gather-and-multiply scoring."""
    template2id = np.zeros((max(unique_templates) + 1, 1), dtype=int)
    for count_template, uqt in enumerate(unique_templates):
        template2id[uqt] = count_template
    score = np.zeros((len(p1),))
    total_pairs = np.array(range(len(p1)))
    sublists = [total_pairs[i : i + BATCH] for i in range(0, len(p1), BATCH)]
    for s in sublists:
        feat1 = template_norm_feats[template2id[p1[s]]]
        feat2 = template_norm_feats[template2id[p2[s]]]
        similarity_score = np.sum(feat1 * feat2, -1)
        score[s] = similarity_score.flatten()
    return score


def tar_at_far_nearest(
    label: npt.NDArray[np.int64], score: npt.NDArray[np.float64]
) -> list[dict[str, float]]:
    """roc_curve, then the point with the FPR nearest each target (insightface's table)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(label, score)
    fpr = np.flipud(fpr)
    tpr = np.flipud(tpr)
    rows = []
    for target in FAR_TARGETS:
        min_index = int(np.argmin(np.abs(fpr - target)))
        rows.append(
            {"far_target": target, "tar": float(tpr[min_index]), "far": float(fpr[min_index])}
        )
    return rows


def run(meta: Path, store: Path, out: Path, timer: Any) -> dict[str, Any]:
    """The whole script, timing each step through ``timer(stage)`` (its imports are made
    first, untimed, as the script makes them at its top)."""
    import h5py  # noqa: F401
    import sklearn.metrics
    import sklearn.preprocessing  # noqa: F401

    timer("imports")
    templates, medias = read_template_media_list(meta / "ijbc_face_tid_mid.txt")
    p1, p2, label = read_template_pair_list(meta / "ijbc_template_pair_label.txt")
    timer("parse")
    img_feats = read_features(store)
    timer("read")
    template_norm_feats, unique_templates = image2template_feature(img_feats, templates, medias)
    del img_feats
    timer("pool")
    score = verification(template_norm_feats, unique_templates, p1, p2)
    timer("score")
    rows = tar_at_far_nearest(label, score)
    timer("metrics")
    np.save(out / "baseline_scores.npy", score)
    (out / "baseline_tar.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    timer("write")
    return {"tar_at_far": rows, "n_pairs": int(score.size)}
