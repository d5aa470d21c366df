"""Residual blocks (He et al., 2016) of the pose networks, and their initialisation.

:class:`BasicBlock` and :class:`Bottleneck` build the ResNet backbones of
:class:`~sshpe.models.SimpleBaseline` and the branches and first stage of
:class:`~sshpe.hrnet.HRNet`; their parameter names (``conv1``, ``bn1``, ..., ``downsample``)
are those of the common ResNet and HRNet releases, so ImageNet weights load by name.

Example:
    >>> import torch
    >>> block = Bottleneck(8, 4)
    >>> block(torch.zeros(1, 8, 6, 6)).shape
    torch.Size([1, 16, 6, 6])
"""

from __future__ import annotations

from collections.abc import Collection
from typing import cast

import torch
from torch import nn

__all__ = ["BasicBlock", "Bottleneck", "check_network_args", "init_pose_weights"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut (ResNet-18/34).

    Args:
        in_channels: channels of the ``(B, C_in, h, w)`` input.
        channels: ``C``, channels of the ``(B, C, h / stride, w / stride)`` output.
        stride: stride of the first convolution and the shortcut.
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        out: torch.Tensor = self.relu(self.bn2(self.conv2(y)) + identity)
        return out


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 convolutions, 4x channel expansion (ResNet-50/101).

    Args:
        in_channels: channels of the ``(B, C_in, h, w)`` input.
        channels: ``C``; the output ``(B, 4 C, h / stride, w / stride)`` has ``4 C``.
        stride: stride of the 3x3 convolution and the shortcut.
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        out: torch.Tensor = self.relu(self.bn3(self.conv3(y)) + identity)
        return out


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def init_pose_weights(model: nn.Module, head: nn.Conv2d) -> None:
    """Initialise a pose network for training from scratch, in place.

    He init for the convolutions, N(0, 0.001) for transposed convolutions and the heatmap
    ``head`` (bias 0), BatchNorm at identity, and the last BatchNorm of every residual
    branch at zero (Goyal et al., 2017): each block starts as the identity, which trains
    from scratch markedly faster.

    Args:
        model: the network.
        head: its final ``1 x 1`` heatmap convolution (with a bias).
    """
    for m in model.modules():
        if isinstance(m, nn.ConvTranspose2d):
            nn.init.normal_(m.weight, std=0.001)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, BasicBlock):
            nn.init.zeros_(m.bn2.weight)
        elif isinstance(m, Bottleneck):
            nn.init.zeros_(m.bn3.weight)
    nn.init.normal_(head.weight, std=0.001)
    nn.init.zeros_(cast(torch.Tensor, head.bias))


def check_network_args(arch: str, known: Collection[str], num_joints: int, width: float) -> None:
    """The constructor checks every pose network shares.

    Raises:
        ValueError: if ``arch`` is not in ``known``, ``num_joints`` is not an integer
            >= 1, or ``width`` is not > 0.

    Example:
        >>> check_network_args("resnet18", ("resnet18",), 17, 0.25)
    """
    if arch not in known:
        raise ValueError(f"arch must be one of {sorted(known)}, got {arch!r}")
    if isinstance(num_joints, bool) or not isinstance(num_joints, int) or num_joints < 1:
        raise ValueError(f"num_joints must be an integer >= 1, got {num_joints!r}")
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width!r}")
