"""IResNet, the backbone of insightface's ``arcface_torch``, with its exact parameter names.

Input: float32 N x 3 x 112 x 112 (the ``arcface112`` preset). Output: the raw 512-d
embedding (N x 512, not L2-normalized), the output of the final ``features`` BatchNorm1d.

Source: insightface, ``recognition/arcface_torch/backbones/iresnet.py``, the network of
Deng et al., *ArcFace: Additive Angular Margin Loss for Deep Face Recognition*, CVPR 2019
(its "improved residual unit" BN-Conv-BN-PReLU-Conv-BN and its BN-Dropout-FC-BN embedding
output). The module tree, names, shapes, BatchNorm ``eps`` (1e-5 everywhere) and
``momentum`` (PyTorch's default 0.1, never set there) follow that file, so the
``backbone.pth`` state_dicts it publishes load with strict key and shape matching:

- stem: ``conv1`` (3 -> 64, 3x3, stride 1, padding 1, no bias), ``bn1``, ``prelu``
  (one slope per channel);
- ``layer1`` .. ``layer4``: 64/128/256/512 channels, each stage's first unit has stride 2
  (so 112 -> 56 -> 28 -> 14 -> 7) and a ``downsample`` (``0``: 1x1 conv with that stride,
  no bias; ``1``: BatchNorm2d), even ``layer1`` whose width does not change;
- a unit (``IBasicBlock``): ``bn1`` -> ``conv1`` (3x3, stride 1) -> ``bn2`` -> ``prelu`` ->
  ``conv2`` (3x3, the unit's stride) -> ``bn3``, plus the identity or ``downsample(x)``;
  no activation after the sum;
- head: ``bn2`` (BatchNorm2d 512) -> flatten -> ``dropout`` (p = 0 unless given) -> ``fc``
  (Linear 512*7*7 -> 512, with bias) -> ``features`` (BatchNorm1d 512, affine, its weight
  initialized to 1 and frozen with ``requires_grad = False`` as arcface_torch does).

Depths: r18 [2, 2, 2, 2], r34 [3, 4, 6, 3], r50 [3, 4, 14, 3], r100 [3, 13, 30, 3],
r200 [6, 26, 60, 6]. arcface_torch's ``fp16`` option (autocast inside ``forward``) is left
out: it adds no parameter, and facebench applies autocast around the call.

Random initialization follows arcface_torch: conv weights ~ N(0, 0.1), BatchNorm2d weight 1
and bias 0, PReLU slopes 0.25, ``fc`` PyTorch's default. That is scaled for training, where
BatchNorm uses batch statistics: in eval mode an untrained network's activations grow about
tenfold per unit (r50's features reach ~1e26, r100's overflow to NaN). The build functions
below (which the registry uses) therefore turn on arcface_torch's own ``zero_init_residual``
option, which zeroes each unit's ``bn2`` weight so that every unit without ``downsample``
starts as the identity, and random-weight features stay finite and of order 1.
``IResNet(depths)`` alone gives arcface_torch's default initialization.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

INPUT_SIZE = (112, 112)
FEATURE_DIM = 512
BN_EPS = 1e-05
STAGE_WIDTHS = (64, 128, 256, 512)
DEPTHS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}
_FC_SCALE = 7 * 7  # the 7x7 map left by four stride-2 stages on a 112x112 input


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """The improved residual unit: BN-conv-BN-PReLU-conv-BN plus a (projected) shortcut.

    Parameters
    ----------
    inplanes, planes
        Input and output channels.
    stride
        Stride of the second convolution (and of ``downsample``).
    downsample
        The shortcut projection (1x1 conv + BatchNorm2d), or None for the identity.
    """

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=BN_EPS)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map N x inplanes x H x W to N x planes x H/stride x W/stride."""
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """arcface_torch's IResNet backbone (see the module docstring for the exact layout).

    Parameters
    ----------
    layers
        Number of units in ``layer1`` .. ``layer4`` (``DEPTHS`` holds the published ones).
    dropout
        Dropout probability before ``fc`` (arcface_torch's default 0; inactive in eval mode).
    num_features
        Embedding size (512 for every published model).
    zero_init_residual
        arcface_torch's option of the same name: set each unit's ``bn2`` weight to 0, so that
        every unit without ``downsample`` starts as the identity.
    """

    def __init__(
        self,
        layers: Sequence[int],
        dropout: float = 0.0,
        num_features: int = FEATURE_DIM,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"Expected argument `layers` to have 4 entries, but got {layers}")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=BN_EPS)
        self.prelu = nn.PReLU(self.inplanes)
        self.layer1 = self._make_layer(STAGE_WIDTHS[0], layers[0], stride=2)
        self.layer2 = self._make_layer(STAGE_WIDTHS[1], layers[1], stride=2)
        self.layer3 = self._make_layer(STAGE_WIDTHS[2], layers[2], stride=2)
        self.layer4 = self._make_layer(STAGE_WIDTHS[3], layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(STAGE_WIDTHS[3], eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(STAGE_WIDTHS[3] * _FC_SCALE, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=BN_EPS)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1.0)
                nn.init.constant_(module.bias, 0.0)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, IBasicBlock):
                    nn.init.constant_(module.bn2.weight, 0.0)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=BN_EPS),
            )
        units = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        units += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map N x 3 x 112 x 112 to the raw N x ``num_features`` embedding."""
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        x = self.fc(self.dropout(x))
        return self.features(x)


def iresnet18() -> IResNet:
    """IResNet-18 (arcface_torch ``r18``), 112x112 -> 512, ``zero_init_residual``."""
    return IResNet(DEPTHS["iresnet18"], zero_init_residual=True)


def iresnet34() -> IResNet:
    """IResNet-34 (arcface_torch ``r34``), 112x112 -> 512, ``zero_init_residual``."""
    return IResNet(DEPTHS["iresnet34"], zero_init_residual=True)


def iresnet50() -> IResNet:
    """IResNet-50 (arcface_torch ``r50``), 112x112 -> 512, ``zero_init_residual``."""
    return IResNet(DEPTHS["iresnet50"], zero_init_residual=True)


def iresnet100() -> IResNet:
    """IResNet-100 (arcface_torch ``r100``), 112x112 -> 512, ``zero_init_residual``."""
    return IResNet(DEPTHS["iresnet100"], zero_init_residual=True)


def iresnet200() -> IResNet:
    """IResNet-200 (arcface_torch ``r200``), 112x112 -> 512, ``zero_init_residual``."""
    return IResNet(DEPTHS["iresnet200"], zero_init_residual=True)
