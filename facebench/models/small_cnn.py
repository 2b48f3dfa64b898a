"""A small CNN for the demo: fast on CPU, trained on tiny images (digits, Fashion-MNIST).

Input: float32 N x 3 x 32 x 32 by default (the ``small32`` preset); any H, W >= 16 works,
because an adaptive average pool makes the head independent of the map size (the two
pools leave a map of H/4 x W/4, rounded down). Output: the raw ``feature_dim``-d feature
(N x 64 by default, not L2-normalized).

Source: facebench's own design, a VGG-style stack of conv-BN-ReLU blocks (Simonyan and
Zisserman, 2015; BatchNorm of Ioffe and Szegedy, 2015) with global average pooling
(Lin et al., *Network in Network*, 2014):

- ``block1``: conv 3x3 3 -> 32, BN, ReLU, max-pool 2x2;
- ``block2``: conv 3x3 32 -> 64, BN, ReLU, max-pool 2x2;
- ``block3``: conv 3x3 64 -> 128, BN, ReLU;
- ``pool``: adaptive average pool to 1 x 1;
- ``fc``: Linear 128 -> ``feature_dim`` (with bias).

All convolutions have padding 1 and no bias (the BatchNorm that follows has one).
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SIZE = (32, 32)
MIN_INPUT_SIZE = 16
FEATURE_DIM = 64
WIDTHS = (32, 64, 128)


def _block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks, global average pooling and a linear feature layer.

    Parameters
    ----------
    feature_dim
        Size of the output feature.
    widths
        Channels of the three blocks.
    """

    def __init__(
        self, feature_dim: int = FEATURE_DIM, widths: tuple[int, int, int] = WIDTHS
    ) -> None:
        super().__init__()
        if feature_dim < 1:
            raise ValueError(f"Expected argument `feature_dim` to be >= 1, but got {feature_dim}")
        self.block1 = _block(3, widths[0], pool=True)
        self.block2 = _block(widths[0], widths[1], pool=True)
        self.block3 = _block(widths[1], widths[2], pool=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], feature_dim)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map N x 3 x H x W (H, W >= 16) to the raw N x ``feature_dim`` feature."""
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def small_cnn() -> SmallCNN:
    """SmallCNN with the default 64-d feature, for 3 x 32 x 32 inputs."""
    return SmallCNN()


DIGITS_WIDTHS = (16, 32, 64)


def digits_cnn(feature_dim: int = 32) -> SmallCNN:
    """The demo's model for 16 x 16 inputs (8 x 8 digits upscaled): widths 16/32/64.

    ``feature_dim=2`` gives the 2-D feature of the paper's Figure 1 picture.
    """
    return SmallCNN(feature_dim=feature_dim, widths=DIGITS_WIDTHS)
