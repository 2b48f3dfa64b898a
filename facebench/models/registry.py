"""The registry of model architectures: name -> :class:`ArchSpec`.

``ARCHITECTURES`` is a plain dict; the command line builds its ``--arch`` choices from it and
the tests are parametrized over it. Importing this module does not import torch (each
``build`` imports its architecture module when called), so a command's ``--help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    """What facebench knows about one architecture.

    Attributes
    ----------
    name
        The registry key (``--arch NAME``).
    build
        Returns a new module with random weights, in training mode; its forward maps float32
        N x 3 x H x W (H, W = ``input_size``) to the raw, un-normalized N x ``feature_dim``
        feature.
    input_size
        (H, W) in pixels.
    feature_dim
        Length of the feature.
    preset
        Name of the preprocessing preset the architecture expects.
    description
        One line: what it is and where it comes from.
    """

    name: str
    build: Callable[[], nn.Module]
    input_size: tuple[int, int]
    feature_dim: int
    preset: str
    description: str


def _iresnet(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from facebench.models import iresnet

        module: nn.Module = getattr(iresnet, name)()
        return module

    build.__name__ = name
    build.__doc__ = f"Build {name} with random weights."
    return build


def _face_resnet() -> nn.Module:
    from facebench.models.face_resnet import face_resnet

    return face_resnet()


def _small_cnn() -> nn.Module:
    from facebench.models.small_cnn import small_cnn

    return small_cnn()


def _digits_cnn() -> nn.Module:
    from facebench.models.small_cnn import digits_cnn

    return digits_cnn()


def _digits_cnn_2d() -> nn.Module:
    from facebench.models.small_cnn import digits_cnn

    return digits_cnn(feature_dim=2)


_IRESNET_DEPTHS = {
    "iresnet18": "18",
    "iresnet34": "34",
    "iresnet50": "50",
    "iresnet100": "100",
    "iresnet200": "200",
}

ARCHITECTURES: dict[str, ArchSpec] = {
    **{
        name: ArchSpec(
            name=name,
            build=_iresnet(name),
            input_size=(112, 112),
            feature_dim=512,
            preset="arcface112",
            description=(
                f"IResNet-{depth} of insightface arcface_torch (loads its backbone.pth "
                "strictly); 112x112 -> 512"
            ),
        )
        for name, depth in _IRESNET_DEPTHS.items()
    },
    "face-resnet": ArchSpec(
        name="face-resnet",
        build=_face_resnet,
        input_size=(112, 96),
        feature_dim=512,
        preset="face-resnet-112x96",
        description=(
            "Face-ResNet, 27 conv layers (Wen et al. ECCV 2016; the L2-softmax paper's FR); "
            "112x96 -> 512"
        ),
    ),
    "small-cnn": ArchSpec(
        name="small-cnn",
        build=_small_cnn,
        input_size=(32, 32),
        feature_dim=64,
        preset="small32",
        description="small conv-BN-ReLU CNN for the demo (digits, Fashion-MNIST); 32x32 -> 64",
    ),
    "digits-cnn": ArchSpec(
        name="digits-cnn",
        build=_digits_cnn,
        input_size=(16, 16),
        feature_dim=32,
        preset="small16",
        description="the small CNN at widths 16/32/64 for 16x16 inputs (the demo); -> 32",
    ),
    "digits-cnn-2d": ArchSpec(
        name="digits-cnn-2d",
        build=_digits_cnn_2d,
        input_size=(16, 16),
        feature_dim=2,
        preset="small16",
        description="digits-cnn with a 2-D feature (the paper's Figure 1 picture)",
    ),
}
