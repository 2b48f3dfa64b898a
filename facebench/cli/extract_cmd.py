"""``facebench extract``: images -> a model -> a feature store (resumable, torchrun-aware)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from facebench.store import COMPRESSIONS
from protocols import PROTOCOLS

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("extract")
@click.argument("root", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The feature store to write (.h5).",
)
@click.option(
    "--protocol",
    type=click.Choice(sorted(PROTOCOLS)),
    default=None,
    help="Extract exactly the images this protocol needs.",
)
@click.option(
    "--protocol-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="IJB-A/B/C: the folder of your protocol files (default: ROOT).",
)
@click.option(
    "--list",
    "list_file",
    type=_FILE,
    default=None,
    help="A file of image paths relative to ROOT, one per line.",
)
@click.option("--model", type=_FILE, default=None, help="A TorchScript (.ts/.pt) or ONNX model.")
@click.option("--arch", default=None, help="An architecture facebench ships (with --weights).")
@click.option("--weights", type=_FILE, default=None, help="A state_dict for --arch.")
@click.option(
    "--trust-checkpoint",
    is_flag=True,
    help="Load --weights that need Python code to unpickle (runs that code; trusted files only).",
)
@click.option("--preset", default=None, help="Preprocessing preset (default: the arch's).")
@click.option("--image-size", type=(int, int), default=None, help="Model input H W.")
@click.option("--mean", default=None, help="Per-channel mean on [0, 1]: one value or three.")
@click.option("--std", default=None, help="Per-channel std: one value or three.")
@click.option("--bgr", is_flag=True, default=None, help="Give the model BGR channel order.")
@click.option(
    "--crop",
    type=click.Choice(["none", "center"]),
    default=None,
    help="Center-crop to the input's aspect ratio before resizing.",
)
@click.option("--box-margin", type=float, default=None, help="Relative margin around --boxes.")
@click.option(
    "--landmarks",
    type=_FILE,
    default=None,
    help="5-point landmarks file (path x1 y1 ... x5 y5 [score]): align each face.",
)
@click.option("--boxes", type=_FILE, default=None, help="Face boxes file (path x y w h).")
@click.option("--flip", is_flag=True, help="Also store the mirrored image's feature.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Processes decoding images.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "tf32", "fp16", "bf16"]),
    default="fp32",
    show_default=True,
    help="fp32: IEEE float32 on every device; tf32: float32 with TF32 products and"
    " convolutions (NVIDIA GPUs, faster); fp16/bf16: autocast (fp16 on GPU). Recorded in"
    " the store.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="Items per resumable chunk.",
)
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Record unreadable images as skipped (in the store) instead of stopping.",
)
@click.option(
    "--compression", type=click.Choice(list(COMPRESSIONS)), default="none", show_default=True
)
@click.option(
    "--max-image-pixels",
    type=click.IntRange(min=1),
    default=None,
    help="Refuse images larger than this many pixels (default: Pillow's 89,478,485).",
)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT (and an unfinished other run).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def extract_command(root: Path, output: Path, **kw: Any) -> None:
    """Extract L2-normalized features (with raw norms) of images under ROOT into a store.

    Without --protocol or --list, every image under ROOT (jpg, jpeg, png, bmp; recursive)
    is extracted. ROOT may also be an insightface validation set (a .bin file: lfw.bin,
    cfp_fp.bin, ...): its images are decoded from the file (store ids FILE.bin#<index>).
    An interrupted run resumes when the same command is run again. Under torchrun the
    images are split across the processes.

    \b
    Example:
      facebench extract /data/lfw --protocol lfw --arch iresnet50 \\
          --weights backbone.pth -o lfw.h5 --flip
      facebench extract /data/IJB-A --protocol ijba --protocol-dir /data/IJB-A \\
          --arch iresnet50 --weights backbone.pth --box-margin 0.2 -o ijba.h5
      facebench extract /data/faces --list files.txt --model model.onnx \\
          --image-size 112 112 -o faces.h5
      facebench extract cfp_fp.bin --arch iresnet50 --weights backbone.pth -o cfp_fp.h5
      torchrun --nproc-per-node 2 -m facebench extract /data/lfw --protocol lfw --model r50.ts \\
          --image-size 112 112 -o lfw.h5
    """
    from facebench.extract.api import ExtractRequest, extract, parse_triple
    from facebench.extract.runner import ExtractOptions

    overrides: dict[str, Any] = {}
    if kw["image_size"] is not None:
        overrides["image_size"] = tuple(kw["image_size"])
    for key in ("mean", "std"):
        value = parse_triple(kw[key], f"--{key}")
        if value is not None:
            overrides[key] = value
    if kw["bgr"]:
        overrides["bgr"] = True
    if kw["crop"] is not None:
        overrides["crop"] = kw["crop"]
    if kw["box_margin"] is not None:
        overrides["box_margin"] = kw["box_margin"]
    request = ExtractRequest(
        root=root,
        output=output,
        protocol=kw["protocol"],
        list_file=kw["list_file"],
        model=kw["model"],
        arch=kw["arch"],
        weights=kw["weights"],
        preset=kw["preset"],
        overrides=overrides,
        landmarks=kw["landmarks"],
        boxes=kw["boxes"],
        protocol_dir=kw["protocol_dir"],
        trust_checkpoint=kw["trust_checkpoint"],
    )
    options = ExtractOptions(
        batch_size=kw["batch_size"],
        workers=kw["workers"],
        device=kw["device"],
        precision=kw["precision"],
        flip=kw["flip"],
        chunk_size=kw["chunk_size"],
        skip_bad=kw["skip_bad"],
        compression=COMPRESSIONS[kw["compression"]],
        overwrite=kw["overwrite"],
        progress=not kw["no_progress"],
        max_image_pixels=kw["max_image_pixels"],
    )
    info = extract(request, options)
    if info is not None:
        skipped = f", {info.n_skipped} skipped" if info.n_skipped else ""
        click.echo(
            f"wrote {info.path}: {info.n_items} items x {info.dim} dims, flip"
            f" {'yes' if info.has_flip else 'no'}{skipped}, content sha256"
            f" {info.content_sha256[:12]}...",
            err=True,
        )
