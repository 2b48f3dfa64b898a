"""``make demo``: the evaluation spine end to end on generated features.

Generates raw features for the 7,701 images of LFW's official pairs.txt (one random
identity direction per person plus per-image noise, so genuine pairs are more similar),
then runs the real command line: ``facebench import`` -> ``facebench verify`` (twice: a
strong and a weak synthetic model) -> ``facebench plot-roc``. Real images and trained
models join the demo in a later issue.

Usage: ``python -m facebench.demo OUT_DIR``
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from protocols import lfw


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


def run(out_dir: Path) -> None:
    """Write the demo's inputs and run the commands, printing each one."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = lfw.load().items
    (out_dir / "ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    reports = []
    for name, noise, seed in (("strong", 1.2, 1), ("weak", 1.6, 2)):
        np.save(out_dir / f"{name}.npy", synthetic_features(ids, noise=noise, seed=seed))
        store = out_dir / f"{name}.h5"
        report = out_dir / f"{name}.json"
        _facebench(
            "import",
            str(out_dir / f"{name}.npy"),
            "--ids",
            str(out_dir / "ids.txt"),
            "-o",
            str(store),
            "--overwrite",
        )
        _facebench(
            "verify",
            "--protocol",
            "lfw",
            "--features",
            str(store),
            "--json",
            str(report),
            "--label",
            f"synthetic {name}",
            "--overwrite",
        )
        reports.append(str(report))
    _facebench("plot-roc", *reports, "-o", str(out_dir / "roc.png"), "--overwrite")
    print(f"\ndemo done: reports, scores and roc.png are in {out_dir}/", file=sys.stderr)


def _facebench(*args: str) -> None:
    print(f"\n$ facebench {shlex.join(args)}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "facebench", *args], check=True)


if __name__ == "__main__":
    run(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out"))
