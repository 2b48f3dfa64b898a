"""Synthetic features for examples and tests: one random direction per identity plus noise.

The real demo (``facebench demo``, what ``make demo`` runs) trains models on real data: see
:mod:`facebench.experiment`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def synthetic_features(
    ids: list[str], dim: int = 128, noise: float = 1.0, seed: int = 0
) -> npt.NDArray[np.float32]:
    """Raw features: a random direction per person (the folder name) plus Gaussian noise.

    Parameters
    ----------
    ids : list of str
        Item keys ``Name/Name_NNNN.jpg``; the part before '/' is the identity.
    dim : int
        Feature dimension.
    noise : float
        Noise scale relative to the identity direction (larger = a weaker model).
    seed : int
        Seed of the generator; the same seed gives the same features.
    """
    rng = np.random.default_rng(seed)
    people = sorted({i.split("/", 1)[0] for i in ids})
    centre = rng.standard_normal((len(people), dim))
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    person_index = {p: k for k, p in enumerate(people)}
    rows = np.array([person_index[i.split("/", 1)[0]] for i in ids])
    scale = rng.uniform(5.0, 30.0, size=(len(ids), 1))  # raw norms vary, as real ones do
    feats = centre[rows] + noise * rng.standard_normal((len(ids), dim)) / np.sqrt(dim)
    return (feats * scale).astype(np.float32)
