"""``facebench export``: a trained checkpoint -> TorchScript and/or ONNX files."""

from __future__ import annotations

from pathlib import Path

import click

from facebench.models.registry import ARCHITECTURES


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--arch",
    required=True,
    type=click.Choice(list(ARCHITECTURES)),
    help="The checkpoint's architecture (as for `facebench extract --arch`).",
)
@click.option(
    "--onnx",
    "onnx_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write an ONNX model here (dynamic batch axis).",
)
@click.option(
    "--torchscript",
    "torchscript_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a TorchScript model here (torch.jit.trace).",
)
@click.option(
    "--input-size",
    type=(click.IntRange(min=1), click.IntRange(min=1)),
    default=None,
    metavar="H W",
    help="The input height and width to trace [default: the architecture's].",
)
@click.option(
    "--trust-checkpoint",
    is_flag=True,
    help="Load a checkpoint that needs Python code to unpickle (runs that code).",
)
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
def export_command(
    checkpoint: Path,
    arch: str,
    onnx_path: Path | None,
    torchscript_path: Path | None,
    input_size: tuple[int, int] | None,
    trust_checkpoint: bool,
    overwrite: bool,
) -> None:
    """Export CHECKPOINT (a state_dict for --arch) to ONNX and/or TorchScript.

    The checkpoint loads as `facebench extract --arch ARCH --weights CHECKPOINT` loads it;
    the export maps a float32 N x 3 x H x W batch to the raw N x D feature. Each file is
    loaded back and run before it is put in place: its features must equal the
    checkpoint's within 1e-5 (relative where features exceed 1), or nothing is written.
    Extract with the exported file via `facebench extract --model FILE --preset PRESET`
    (the architecture's preset).

    \b
    Example:
      facebench export m.pt --arch digits-cnn --onnx m.onnx --torchscript m.ts
      facebench export backbone.pth --arch iresnet50 --onnx r50.onnx
      facebench extract /data/lfw --protocol lfw --model r50.onnx --preset arcface112 -o lfw.h5
    """
    from facebench.export import export_checkpoint

    exported = export_checkpoint(
        checkpoint,
        arch,
        onnx=onnx_path,
        torchscript=torchscript_path,
        input_size=input_size,
        overwrite=overwrite,
        trust_checkpoint=trust_checkpoint,
    )
    preset = ARCHITECTURES[arch].preset
    for item in exported:
        check = (
            "not run (no onnxruntime)"
            if item.max_abs_diff is None
            else f"max |diff| {item.max_abs_diff:.2e} vs the checkpoint"
        )
        click.echo(
            f"{item.format}: {item.path}  {item.input_size[0]}x{item.input_size[1]} ->"
            f" {item.feature_dim}  sha256 {item.sha256}  {check}"
        )
    click.echo(f"extract with: --model FILE --preset {preset}", err=True)
