"""``facebench demo``: the paper's experiment in miniature, on real data, end to end.

Trains four variants of one small CNN on the training classes of a real dataset (scikit-
learn's bundled handwritten digits by default: classes 0-4 train, 5-9 are held out):
softmax, L2-softmax with alpha at the lower bound ``alpha_low(C, 0.9)``, L2-softmax with
alpha = 16, and L2-softmax with a learned alpha. The held-out classes are exported as image
files and two protocols are written over them in the official formats (an LFW-format
``pairs.txt``, 10 folds of 300 + 300, and an IJB-A-format 1:1 folder of 10 splits). Each
variant is extracted (``facebench extract``), verified on both protocols (``facebench
verify``), and compared (``facebench compare``, paired bootstrap over pairs and templates);
the ROC figures, the norm figure (``facebench norms``) and the paper's 2-D picture
(softmax features fan out radially, L2-softmax features lie on a circle) are written too.
Deterministic with ``seed``.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

VARIANTS: tuple[tuple[str, str, float | Literal["learned"] | None], ...] = (
    ("softmax", "softmax", None),
    ("l2-alpha-low", "l2softmax", None),  # None: the lower bound alpha_low(C, 0.9)
    ("l2-alpha-16", "l2softmax", 16.0),
    ("l2-learned", "l2softmax", "learned"),
)
ARCH = "digits-cnn"
ARCH_2D = "digits-cnn-2d"


def _run(*args: str, quiet: bool = True) -> str:
    """Run a facebench command in this process (one torch import for the whole demo)."""
    from facebench.cli import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        cli.main(list(args), prog_name="facebench", standalone_mode=False)
    return out.getvalue()


def run_demo(
    out_dir: Path,
    *,
    dataset: str = "digits",
    holdout: str = "5,6,7,8,9",
    epochs: int = 12,
    seed: int = 0,
    overwrite: bool = False,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Run the whole experiment into ``out_dir``; returns the paths it wrote."""
    from facebench.demo_protocols import write_ijba_11, write_lfw_pairs
    from facebench.errors import OutputExistsError
    from facebench.train.datasets import export_images, load_training_data
    from facebench.train.head import HeadConfig
    from facebench.train.loop import TrainOptions, save_checkpoint, train

    start = time.perf_counter()
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"{out_dir}: the output folder is not empty; pass --overwrite or choose another"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    holdout_classes = tuple(c for c in holdout.split(",") if c)
    data = load_training_data(dataset, holdout=holdout_classes)
    assert data.held_out is not None
    log(
        f"[demo] {dataset}: {len(data.train)} training images of classes"
        f" {', '.join(data.train.classes)}; held out {', '.join(data.holdout)}"
        f" ({len(data.held_out)} images)"
    )
    # held-out images as files, and the two protocols over them
    images = out_dir / "heldout"
    paths = export_images(
        data.held_out, data.holdout, images, prefix="c", image_format="jpg", overwrite=True
    )
    per_class: dict[str, list[str]] = {}
    for path in paths:
        per_class.setdefault(path.split("/")[0], []).append(path)
    pairs = write_lfw_pairs(
        out_dir / "pairs.txt", {c: len(v) for c, v in per_class.items()}, seed=seed
    )
    ijba_dir = write_ijba_11(out_dir / "ijba-format", per_class, image_size=(8, 8), seed=seed)
    log(f"[demo] wrote {pairs.name} (LFW format) and {ijba_dir.name}/ (IJB-A 1:1 format)")
    options = TrainOptions(epochs=epochs, batch_size=64, lr=0.1, seed=seed, device="cpu")
    reports: dict[str, dict[str, Path]] = {"lfw": {}, "ijba": {}}
    histories: dict[str, list[dict[str, float]]] = {}
    for name, head, alpha in VARIANTS:
        t0 = time.perf_counter()
        config = HeadConfig(name=head, alpha=alpha)
        result = train(data, ARCH, config, options, progress=False, log=lambda m: None)
        checkpoint = save_checkpoint(out_dir / f"{name}.pt", result, overwrite=True)
        histories[name] = result.history
        for protocol, extra in (
            ("lfw", ["--list", str(_list_file(out_dir, paths))]),
            ("ijba", ["--protocol", "ijba", "--protocol-dir", str(ijba_dir)]),
        ):
            store = out_dir / f"{name}.{protocol}.h5"
            with contextlib.redirect_stderr(io.StringIO()):
                _run(
                    "extract",
                    str(images),
                    *extra,
                    "--arch",
                    ARCH,
                    "--weights",
                    str(checkpoint),
                    "-o",
                    str(store),
                    "--workers",
                    "0",
                    "--no-progress",
                    "--overwrite",
                    "--device",
                    "cpu",
                    "--batch-size",
                    "256",
                )
                report = out_dir / f"{name}.{protocol}.json"
                verify = (
                    ["--protocol", "lfw", "--pairs", str(pairs)]
                    if protocol == "lfw"
                    else [
                        "--protocol",
                        "ijba",
                        "--protocol-dir",
                        str(ijba_dir),
                        "--far",
                        "0.001,0.01,0.1",
                    ]
                )
                _run(
                    "verify",
                    *verify,
                    "--features",
                    str(store),
                    "--json",
                    str(report),
                    "--label",
                    name,
                    "--overwrite",
                )
            reports[protocol][name] = report
        last = result.history[-1]
        alpha_text = f", alpha {last['alpha']:.2f}" if "alpha" in last else ""
        log(
            f"[demo] {name}: {epochs} epochs, train acc {last['accuracy']:.3f}{alpha_text},"
            f" extracted and verified ({time.perf_counter() - t0:.1f} s)"
        )
    written: dict[str, Any] = {"reports": reports}
    for protocol, by_name in reports.items():
        files = [str(p) for p in by_name.values()]
        with contextlib.redirect_stderr(io.StringIO()):
            _run("plot-roc", *files, "-o", str(out_dir / f"roc-{protocol}.png"), "--overwrite")
        table = _run(
            "compare",
            *files,
            "--markdown",
            str(out_dir / f"compare-{protocol}.md"),
            "--json",
            str(out_dir / f"compare-{protocol}.json"),
            "--overwrite",
            "--resamples",
            "500",
            "--seed",
            str(seed),
        )
        kind = "LFW-format pairs" if protocol == "lfw" else "IJB-A-format 1:1 templates"
        print(f"\n== {protocol}: {kind} ==")
        print(table, end="")
    with contextlib.redirect_stderr(io.StringIO()):
        _run(
            "norms",
            str(out_dir / "softmax.lfw.h5"),
            "--protocol",
            "lfw",
            "--pairs",
            str(pairs),
            "-o",
            str(out_dir / "norms-softmax.png"),
            "--json",
            str(out_dir / "norms-softmax.json"),
            "--overwrite",
        )
    picture = draw_2d_features(data, out_dir / "features-2d.png", epochs=epochs, seed=seed)
    log(f"[demo] drew {picture.name}")
    elapsed = time.perf_counter() - start
    write_readme(out_dir, dataset, data.holdout, epochs, seed, elapsed)
    log(f"[demo] done in {elapsed:.0f} s: everything is in {out_dir}/ (see its README.md)")
    written["seconds"] = elapsed
    return written


def _list_file(out_dir: Path, paths: list[str]) -> Path:
    path = out_dir / "heldout.txt"
    if not path.exists():
        path.write_text("\n".join(paths) + "\n", encoding="utf-8")
    return path


def draw_2d_features(data: Any, path: Path, *, epochs: int, seed: int) -> Path:
    """Train 2-D softmax and L2-softmax versions; draw their training features by class."""
    import torch
    from matplotlib.figure import Figure

    from facebench.extract.preprocess import PRESETS, preprocess
    from facebench.train.head import HeadConfig
    from facebench.train.loop import TrainOptions, train

    # No weight decay and three times the epochs: decay caps the feature norm, which is what
    # lets softmax features spread outwards (the paper's radial picture).
    options = TrainOptions(
        epochs=3 * epochs, batch_size=64, lr=0.05, weight_decay=0.0, seed=seed, device="cpu"
    )
    config = PRESETS["small16"]
    batch = np.stack([preprocess(data.train.image(i), config) for i in range(len(data.train))])
    labels = np.asarray(data.train.labels)
    figure = Figure(figsize=(15, 5))
    panels = []
    for head, alpha in (("softmax", None), ("l2softmax", 8.0)):
        result = train(
            data, ARCH_2D, HeadConfig(name=head, alpha=alpha), options, log=lambda m: None
        )
        result.backbone.eval()
        with torch.no_grad():
            feats = result.backbone(torch.from_numpy(batch)).numpy().astype(np.float64)
        if head == "softmax":
            panels.append(("softmax: raw 2-D features", feats))
        else:
            panels.append(("L2-softmax: raw 2-D features", feats))
            unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
            panels.append(
                ("L2-softmax: what the classifier sees (alpha x / ||x||, alpha = 8)", 8.0 * unit)
            )
    for k, (title, feats) in enumerate(panels):
        ax = figure.add_subplot(1, 3, k + 1)
        for c in range(len(data.train.classes)):
            sel = labels == c
            ax.scatter(feats[sel, 0], feats[sel, 1], s=4, label=data.train.classes[c])
        ax.scatter([0], [0], marker="+", c="k", s=60)  # the origin
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal", "datalim")
        ax.grid(True, alpha=0.3)
        ax.legend(markerscale=3, fontsize=7, loc="best")
    figure.suptitle("2-D features of the training classes (+ marks the origin)")
    figure.savefig(path, dpi=120)
    return path


def write_readme(
    out_dir: Path, dataset: str, holdout: tuple[str, ...], epochs: int, seed: int, seconds: float
) -> None:
    """Say what each file in the demo folder is."""
    names = ", ".join(name for name, _, _ in VARIANTS)
    text = f"""# facebench demo output

Made by `facebench demo` in {seconds:.0f} s (dataset `{dataset}`, held-out classes
{", ".join(holdout)}, {epochs} epochs, seed {seed}). Variants: {names}.

| file | what it is |
|---|---|
| `heldout/` | the held-out classes' images (JPEG), `c<class>/c<class>_<NNNN>.jpg` |
| `heldout.txt` | the list of those images (what `extract --list` read) |
| `pairs.txt` | an LFW-format pairs file over them: 10 folds of 300 matched + 300 mismatched |
| `ijba-format/` | an IJB-A-format 1:1 protocol over them (10 splits, templates of 1-4 images) |
| `<variant>.pt` | the trained checkpoint (weights-only loadable; `--arch {ARCH} --weights`) |
| `<variant>.lfw.h5`, `<variant>.ijba.h5` | feature stores of the held-out images |
| `<variant>.lfw.json`, `<variant>.ijba.json` | verify reports (+ `.scores.npz` per pair) |
| `compare-lfw.md/.json`, `compare-ijba.md/.json` | the variants compared (paired bootstrap) |
| `roc-lfw.png`, `roc-ijba.png` | ROC curves of the four variants |
| `norms-softmax.png/.json` | raw feature norm vs verification accuracy (softmax variant) |
| `features-2d.png` | 2-D features of softmax vs L2-softmax by class (the paper's Fig. 1) |

The numbers are on held-out classes of a small real dataset: they show the pipeline and the
variants' relative behaviour, not face-recognition accuracy.
"""
    (out_dir / "README.md").write_text(text, encoding="utf-8")
