"""Face-ResNet: the 27-convolution network of the center-loss paper, used by L2-softmax.

Input: float32 N x 3 x 112 x 96 (H x W; the ``face-resnet-112x96`` preset). Output: the raw
512-d ``fc5`` feature (N x 512, not L2-normalized).

Sources: the Caffe model named "Face-ResNet" released with the code of Wen, Zhang, Li, Qiao,
*A Discriminative Feature Learning Approach for Deep Face Recognition*, ECCV 2016
(``ydwen/caffe-face``, ``face_example/face_train_test.prototxt``; the paper's own Fig. 2
draws a smaller network with local convolutions); Ranjan, Castillo, Chellappa,
*L2-constrained Softmax Loss for Discriminative Face Verification*, 2017, which trains
this released network as "Face-Resnet (FR)". That prototxt feeds 112 x 96 crops scaled as
``(pixel - 127.5) / 128``.

Layout (every convolution is 3x3, stride 1, followed by a per-channel PReLU; a pool is a
2x2 max-pool of stride 2; a residual unit is two padded convolutions whose output, after
the second PReLU, is added to the unit's input):

==========  ===========================  ===================
stage       layers                       map (112 x 96 in)
==========  ===========================  ===================
1           conv1a 32, conv1b 64, pool   54 x 46
res2        1 unit of 64                 54 x 46
2           conv2 128, pool              26 x 22
res3        2 units of 128               26 x 22
3           conv3 256, pool              12 x 10
res4        5 units of 256               12 x 10
4           conv4 512, pool              5 x 4
res5        3 units of 512               5 x 4
fc5         Linear 512*5*4 -> 512
==========  ===========================  ===================

2 + 2 + 1 + 4 + 1 + 10 + 1 + 6 = 27 convolutions. Details the paper leaves open, taken from
the released prototxt:

- the non-residual convolutions (``conv1a`` .. ``conv4``) have no padding (hence
  112 -> 110 -> 108 and the 5 x 4 map before ``fc5``); residual ones have padding 1;
- no batch normalization: the original has none, and we keep it that way so that the
  architecture is the one the papers evaluate;
- the residual convolutions' biases are frozen at zero there (``lr_mult: 0``, constant-0
  filler), so here they have no bias; the other convolutions and ``fc5`` have one;
- Caffe rounds pooled sizes up (``ceil_mode=True``); every map above is even, so this only
  matters for other input sizes, which ``fc5`` rejects anyway;
- initialization: Caffe's "xavier" (uniform, variance 1/fan_in) for the non-residual
  convolutions and ``fc5``, N(0, 0.01) for residual ones, zero biases, PReLU slopes 0.25.

State-dict names follow the prototxt's layer names: ``conv1a.0`` (the convolution),
``conv1a.1`` (its PReLU), ``res4.2.conv1`` / ``res4.2.prelu1`` (unit 3 of stage 4), ``fc5``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INPUT_SIZE = (112, 96)
FEATURE_DIM = 512


def _caffe_xavier_(weight: torch.Tensor) -> None:
    fan_in = weight[0].numel()
    bound = math.sqrt(3.0 / fan_in)
    nn.init.uniform_(weight, -bound, bound)


def final_map_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """Return the (H, W) of the map that reaches ``fc5`` for an input of ``input_size``.

    Each side loses 2 pixels per unpadded convolution (two before the first pool, one before
    each other pool) and is halved, rounded up as Caffe does, by each pool: (112, 96) -> (5, 4).
    """
    sides = []
    for side in input_size:
        side = -(-(side - 4) // 2)
        for _ in range(3):
            side = -(-(side - 2) // 2)
        sides.append(side)
    return sides[0], sides[1]


class ResidualUnit(nn.Module):
    """Two padded 3x3 convolutions with PReLU, added to the input (no activation after).

    Parameters
    ----------
    channels
        Input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.prelu1 = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.prelu2 = nn.PReLU(channels)
        nn.init.normal_(self.conv1.weight, 0.0, 0.01)
        nn.init.normal_(self.conv2.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map N x C x H x W to N x C x H x W."""
        return x + self.prelu2(self.conv2(self.prelu1(self.conv1(x))))


def _transition(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3)  # no padding, with bias
    _caffe_xavier_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers: list[nn.Module] = [conv, nn.PReLU(out_channels)]
    if pool:
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
    return nn.Sequential(*layers)


def _units(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualUnit(channels) for _ in range(count)))


class FaceResNet(nn.Module):
    """The Face-ResNet of Wen et al. 2016 (see the module docstring for the layout).

    Parameters
    ----------
    feature_dim
        Size of ``fc5`` (512 in both papers).
    """

    def __init__(self, feature_dim: int = FEATURE_DIM) -> None:
        super().__init__()
        self.conv1a = _transition(3, 32, pool=False)
        self.conv1b = _transition(32, 64, pool=True)
        self.res2 = _units(64, 1)
        self.conv2 = _transition(64, 128, pool=True)
        self.res3 = _units(128, 2)
        self.conv3 = _transition(128, 256, pool=True)
        self.res4 = _units(256, 5)
        self.conv4 = _transition(256, 512, pool=True)
        self.res5 = _units(512, 3)
        map_height, map_width = final_map_size(INPUT_SIZE)
        self.fc5 = nn.Linear(512 * map_height * map_width, feature_dim)
        _caffe_xavier_(self.fc5.weight)
        nn.init.zeros_(self.fc5.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map N x 3 x 112 x 96 to the raw N x ``feature_dim`` ``fc5`` feature."""
        x = self.res2(self.conv1b(self.conv1a(x)))
        x = self.res3(self.conv2(x))
        x = self.res4(self.conv3(x))
        x = self.res5(self.conv4(x))
        return self.fc5(torch.flatten(x, 1))


def face_resnet() -> FaceResNet:
    """Face-ResNet, 112x96 -> 512 (Wen et al. 2016; Ranjan et al. 2017)."""
    return FaceResNet()
