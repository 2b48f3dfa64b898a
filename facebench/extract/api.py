"""The one library call behind ``facebench extract``: options -> items, model, config -> store."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facebench.errors import FacebenchError
from facebench.extract import sources
from facebench.extract.preprocess import PRESETS, Preprocessing
from facebench.fileio import check_writable
from facebench.store import StoreInfo


@dataclass(frozen=True)
class ExtractRequest:
    """What the user asked for, as the command line gives it."""

    root: Path
    output: Path
    protocol: str | None = None
    list_file: Path | None = None
    model: Path | None = None
    arch: str | None = None
    weights: Path | None = None
    preset: str | None = None
    overrides: dict[str, Any] | None = None
    landmarks: Path | None = None
    boxes: Path | None = None
    protocol_dir: Path | None = None
    trust_checkpoint: bool = False


def select_items(
    request: ExtractRequest, scratch: contextlib.ExitStack | None = None
) -> list[sources.Item]:
    """(a) the images a protocol needs, (b) a list file's, (c) every image under root, or
    (d) every image of an insightface ``.bin`` given as the root.

    ``scratch`` holds the temporary folder that (d) writes the encoded images to; it must
    stay open until the extraction ends.
    """
    if request.protocol and request.list_file:
        raise FacebenchError("Expected --protocol or --list, but got both; choose one")
    if sources.is_bin_file(request.root):
        items = _bin_items(request, scratch)
    elif request.protocol:
        from protocols import PROTOCOLS

        spec = PROTOCOLS[request.protocol]
        if request.protocol in ("bin", "pairs"):
            raise FacebenchError(
                f"Expected --protocol lfw, ytf or an IJB protocol, but got {request.protocol}:"
                + (
                    " give the .bin file itself as the source (`facebench extract cfp_fp.bin ...`)"
                    if request.protocol == "bin"
                    else " list the ids of your pairs file with --list (paths under ROOT)"
                )
            )
        if spec.kind == "templates":
            items = template_items(request.protocol, request.root, request.protocol_dir)
        else:
            protocol = spec.load(None)
            if spec.kind == "videos":
                items = video_items(request.root, protocol.items)
            else:
                items = sources.keyed_items(request.root, protocol.items)
    elif request.list_file:
        items = sources.list_items(request.root, request.list_file)
    else:
        items = sources.folder_items(request.root)
    landmarks = sources.read_landmarks(request.landmarks) if request.landmarks else None
    boxes = sources.read_boxes(request.boxes) if request.boxes else None
    if landmarks is not None or boxes is not None:
        items = sources.attach(items, landmarks=landmarks, boxes=boxes)
    return items


def _bin_items(request: ExtractRequest, scratch: contextlib.ExitStack | None) -> list[sources.Item]:
    """Every image of the .bin, ids ``<file name>#<index>``; no protocol or list applies."""
    for given, flag in ((request.protocol, "--protocol"), (request.list_file, "--list")):
        if given:
            raise FacebenchError(
                f"Expected no {flag} with a .bin source ({request.root}): every image of the"
                " file is extracted, and `verify --protocol bin --bin FILE` pairs them"
            )
    if scratch is None:
        raise ValueError("select_items needs `scratch` for a .bin source")
    folder = scratch.enter_context(tempfile.TemporaryDirectory(prefix="facebench-bin-"))
    return sources.bin_items(request.root, folder)


def template_items(name: str, root: Path, protocol_dir: Path | None) -> list[sources.Item]:
    """The items of an IJB protocol: IJB-A face boxes cropped from the full images (store id
    ``<FILE>#<SIGHTING_ID>``); IJB-B/C loose crops aligned with their 5 landmarks (store id
    ``loose_crop/<name>``)."""
    from protocols import PROTOCOLS

    protocol = PROTOCOLS[name].load(protocol_dir or root)
    if name == "ijba":
        from protocols import ijba

        boxes = ijba.boxes(protocol)
        # The parser refuses FILE values that leave the folder; one image can hold several
        # face boxes (one item each).
        return [
            sources.Item(id=key, path=root / ijba.image_path(key), box=boxes[key])
            for key in protocol.items
        ]
    from protocols import ijbc

    tid_mid = Path(protocol.source) / protocol.files[0]

    def where(key: str) -> str:
        # An image name of the tid_mid file became the key loose_crop/<name>.
        line = sources.line_of(tid_mid, key.removeprefix("loose_crop/"))
        return f"{tid_mid}:{line}" if line is not None else f"{tid_mid} (image {key!r})"

    items = sources.keyed_items(root, protocol.items, where=where)  # before any image
    marks = ijbc.landmarks(protocol)
    return [sources.Item(id=i.id, path=i.path, landmarks=marks[i.id]) for i in items]


def video_items(root: Path, videos: Sequence[str]) -> list[sources.Item]:
    """Every frame of each video folder ``root/<video>`` (ids ``<video>/<frame file>``)."""
    items: list[sources.Item] = []
    missing = []
    for video in videos:
        folder = root / video
        if not folder.is_dir():
            missing.append(video)
            continue
        for frame in sources.folder_items(folder):
            items.append(sources.Item(id=f"{video}/{frame.id}", path=frame.path))
    if missing:
        raise FacebenchError(
            f"{root}: Expected a folder of frames for every video, but {len(missing)} of"
            f" {len(videos)} are missing (first: {', '.join(missing[:5])}); point ROOT at"
            " aligned_images_DB (or frame_images_DB)"
        )
    return sorted(items, key=lambda item: item.id)


def resolve_preprocessing(
    preset: str | None,
    model_preset: str | None,
    input_size: tuple[int, int] | None,
    overrides: dict[str, Any],
    landmarks: bool,
) -> Preprocessing:
    """The preprocessing config: a preset (given, or the architecture's) plus overrides."""
    name = preset or model_preset
    if name is None:
        if "image_size" not in overrides and input_size is None:
            raise FacebenchError(
                "Expected --preset or --image-size H W: the model does not say which input"
                f" size it takes (presets: {', '.join(sorted(PRESETS))})"
            )
        name = "none"
    if name not in PRESETS:
        raise FacebenchError(f"Expected --preset in {sorted(PRESETS)}, but got {name!r}")
    config = PRESETS[name]
    if input_size is not None and "image_size" not in overrides and config.image_size is None:
        overrides = {**overrides, "image_size": input_size}
    if overrides:
        config = config.with_overrides(**overrides)
    if input_size is not None and config.image_size not in (None, input_size):
        raise FacebenchError(
            f"Expected the model's input size {input_size[0]} x {input_size[1]}, but the"
            f" preprocessing gives {config.image_size[0]} x {config.image_size[1]}; drop"
            " --image-size or choose a matching --preset"
        )
    if landmarks and config.align_template is None:
        raise FacebenchError(
            "--landmarks needs a preset with an alignment template (e.g. arcface112,"
            " face-resnet-112x96)"
        )
    return config


def extract(
    request: ExtractRequest,
    options: Any,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> StoreInfo | None:
    """Run ``facebench extract``; returns the store's info on rank 0 (None on others).

    A ``.bin`` root's images are copied to a temporary folder that is removed at the end.
    """
    check_writable(request.output, options.overwrite)  # before any work
    with contextlib.ExitStack() as scratch:
        return _extract(request, options, log, select_items(request, scratch))


def _extract(
    request: ExtractRequest,
    options: Any,
    log: Callable[[str], None],
    items: list[sources.Item],
) -> StoreInfo | None:
    """The model run over ``items`` (see :func:`extract`)."""
    from facebench.extract.distributed import ranks_from_env, shutdown
    from facebench.extract.runner import resolve_device, run_extraction
    from facebench.models.loaders import load_model

    if not options.skip_bad:
        sources.check_exist(items)
    ranks, device = ranks_from_env(options.device)
    device = str(resolve_device(device))
    try:
        model = load_model(
            model=request.model,
            arch=request.arch,
            weights=request.weights,
            device="cpu",
            log=log,
            trust_checkpoint=request.trust_checkpoint,
        )
        config = resolve_preprocessing(
            request.preset,
            model.preset,
            model.input_size,
            dict(request.overrides or {}),
            request.landmarks is not None,
        )
        if ranks.rank == 0:
            log(
                f"extracting {len(items)} images with {model.name} ({config.name}:"
                f" {config.image_size}) on {device}"
                + (f", {ranks.world_size} ranks" if ranks.world_size > 1 else "")
            )
        from dataclasses import replace

        return run_extraction(
            items,
            model,
            config,
            request.output,
            replace(options, device=device),
            ranks=ranks,
            log=log,
        )
    finally:
        shutdown()


def parse_triple(value: str | None, option: str) -> tuple[float, float, float] | None:
    """``"0.5"`` -> (0.5, 0.5, 0.5); ``"0.1,0.2,0.3"`` -> (0.1, 0.2, 0.3)."""
    if value is None:
        return None
    try:
        numbers: Sequence[float] = [float(v) for v in value.replace(" ", ",").split(",") if v]
    except ValueError:
        raise FacebenchError(
            f"Expected {option} as one number or three, but got {value!r}"
        ) from None
    if len(numbers) == 1:
        return (numbers[0], numbers[0], numbers[0])
    if len(numbers) == 3:
        return (numbers[0], numbers[1], numbers[2])
    raise FacebenchError(f"Expected {option} as one number or three, but got {value!r}")
