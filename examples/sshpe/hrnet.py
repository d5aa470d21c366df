"""HRNet pose networks (Sun et al., CVPR 2019), W32 and W48, written here.

The paper's pose layout: a stem of two stride-2 3x3 convolutions (stride 4, 64 channels);
stage 1 of four bottlenecks (256 channels); stages 2, 3 and 4 of 1, 4 and 3
high-resolution modules on 2, 3 and 4 parallel branches at strides 4, 8, 16 and 32 with
``C, 2C, 4C, 8C`` channels (``C`` = 32 for W32, 48 for W48); and a 1x1 heatmap head on the
stride-4 branch. A high-resolution module runs four basic blocks on every branch, then
*fuses*: every branch receives the sum of all branches, the higher-resolution ones brought
down by strided 3x3 convolutions and the lower-resolution ones by a 1x1 convolution and a
nearest-neighbour upsampling. A transition before stages 2-4 adapts the channels and opens
the new, lower branch from the lowest one. The last module fuses into the stride-4 branch
only. At ``width=1`` W32 has 28.5 M parameters and W48 63.6 M, the paper's counts.

The children are named in forward order::

    stem -> layer1 -> transition1 -> stage2 -> transition2 -> stage3 -> transition3
         -> stage4 -> head

Transitions and stages take and return lists of branch maps, highest resolution first, so a
Pose-MUM mixing point at ``stage2`` or ``stage3`` mixes every branch with one plan, each at
its own resolution (:func:`posemum_aug.mix.mix_tiles` takes lists); :attr:`HRNet.MIX_AT` and
:attr:`HRNet.UNMIX_AT` are the trainer's defaults: the input, the stem and stages 2-3, and
the stage-4 output before the head. Upsampling goes to the exact size of the receiving
branch, so any input size works; heatmaps are ``(H / 4, W / 4)`` for sizes divisible by 4.

The parameter names follow the common HRNet releases (``layer1``, ``transition1``,
``stage2.0.branches.0.0.conv1``, ``stage2.0.fuse_layers.1.0.0.0``, ...) with the stem as
``stem.0/1/3/4`` and the head as ``head``: :func:`classifier_state` maps an ImageNet HRNet
classifier, or the pose release (its heatmap head ``final_layer``), onto the network.

Example:
    >>> import torch
    >>> model = HRNet("hrnet_w32", num_joints=17, width=0.125)
    >>> model(torch.zeros(2, 3, 64, 48)).shape
    torch.Size([2, 17, 16, 12])
    >>> stem = model.layer1(model.stem(torch.zeros(2, 3, 64, 48)))
    >>> [tuple(m.shape[1:]) for m in model.stage2(model.transition1([stem]))]
    [(4, 16, 12), (8, 8, 6)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sshpe.blocks import BasicBlock, Bottleneck, check_network_args, init_pose_weights

__all__ = ["HRNet", "HRNetArch", "HighResolutionModule", "Transition", "classifier_state"]

HRNetArch = Literal["hrnet_w32", "hrnet_w48"]

#: ``C``, the channels of the stride-4 branch, of each network.
_WIDTHS: dict[str, int] = {"hrnet_w32": 32, "hrnet_w48": 48}
#: High-resolution modules in stages 2, 3 and 4 (their branches: 2, 3, 4).
_MODULES = (1, 4, 3)
#: Basic blocks per branch in every module, bottlenecks in stage 1.
_BLOCKS = 4
#: Keys of an ImageNet classifier's head: its multi-scale neck and its classifier.
_CLASSIFIER_HEAD = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")
#: The classifier's names of the stem's layers (``stem`` is conv, BN, ReLU, conv, BN, ReLU).
_STEM_NAMES = {"conv1.": "stem.0.", "bn1.": "stem.1.", "conv2.": "stem.3.", "bn2.": "stem.4."}


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]


class Transition(nn.ModuleList):
    """Branch maps of one stage -> the next stage's: channels adapted, one branch opened.

    Entry ``i`` maps input branch ``i`` (a 3x3 convolution where the channels differ, else
    the identity); an entry past the input branches opens a branch from the lowest input
    branch with stride-2 3x3 convolutions, one per halving.

    Args:
        in_channels: channels of the input branches, highest resolution first.
        out_channels: channels of the output branches (at least as many).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        for i, channels in enumerate(out_channels):
            if i < len(in_channels):
                same = in_channels[i] == channels
                conv = [*_conv_bn(in_channels[i], channels, 3, 1), nn.ReLU(inplace=True)]
                layers.append(nn.Identity() if same else nn.Sequential(*conv))
                continue
            steps: list[nn.Module] = []
            source = in_channels[-1]
            for j in range(i + 1 - len(in_channels)):
                target = channels if j == i - len(in_channels) else source
                steps.append(nn.Sequential(*_conv_bn(source, target, 3, 2), nn.ReLU(inplace=True)))
                source = target
            layers.append(nn.Sequential(*steps))
        super().__init__(layers)

    def forward(self, branches: list[Tensor]) -> list[Tensor]:
        """The next stage's branches: ``len(self)`` maps ``(B, C_i, h_i, w_i)``."""
        last = len(branches) - 1
        return [layer(branches[min(i, last)]) for i, layer in enumerate(self)]


class HighResolutionModule(nn.Module):
    """Basic blocks on every branch, then the fuse layers (sum of all branches into each).

    ``fuse_layers[i][j]`` brings branch ``j`` to branch ``i``: the identity for ``j == i``,
    a 1x1 convolution + BN (then a nearest upsampling to branch ``i``'s size) for a lower
    branch ``j > i``, and ``i - j`` stride-2 3x3 convolutions + BN (ReLU between them) for a
    higher branch ``j < i``. Every fused sum goes through a ReLU.

    Args:
        channels: channels of the branches, highest resolution first.
        blocks: basic blocks per branch.
        multi_scale_output: fuse into every branch; ``False``: into the first only (the
            last module of the network), so the output is a one-element list.
    """

    def __init__(self, channels: Sequence[int], blocks: int, multi_scale_output: bool) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c, c) for _ in range(blocks))) for c in channels
        )
        rows = len(channels) if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse(channels, j, i) for j in range(len(channels))) for i in range(rows)
        )

    def forward(self, branches: list[Tensor]) -> list[Tensor]:
        """Maps ``(B, C_i, h_i, w_i)`` of each branch -> the fused maps of the output branches."""
        xs = [branch(x) for branch, x in zip(self.branches, branches, strict=True)]
        fused = []
        for i, row in enumerate(self.fuse_layers):
            size = xs[i].shape[-2:]
            total = xs[i]
            for j, (layer, x) in enumerate(zip(cast(nn.ModuleList, row), xs, strict=True)):
                if j != i:
                    y = layer(x)
                    total = total + (F.interpolate(y, size=size) if y.shape[-2:] != size else y)
            fused.append(torch.relu(total))
        return fused


def _fuse(channels: Sequence[int], source: int, target: int) -> nn.Module:
    """The fuse layer from branch ``source`` to branch ``target``."""
    if source == target:
        return nn.Identity()
    if source > target:  # lower resolution: 1x1 convolution, upsampled in the forward
        return nn.Sequential(*_conv_bn(channels[source], channels[target], 1, 1))
    steps = []
    for k in range(target - source):
        last = k == target - source - 1
        out = channels[target] if last else channels[source]
        layers = _conv_bn(channels[source], out, 3, 2)
        steps.append(nn.Sequential(*layers) if last else nn.Sequential(*layers, nn.ReLU(True)))
    return nn.Sequential(*steps)


class HRNet(nn.Module):
    """HRNet-W32 / W48 for top-down pose: heatmaps ``(B, K, H/4, W/4)`` from the stride-4
    branch (see the module docstring for the layout).

    Channels are ``64`` in the stem, ``256`` after stage 1 and ``C, 2C, 4C, 8C`` on the
    branches, all scaled by ``width`` (at least 4), as :class:`~sshpe.models.SimpleBaseline`'s.

    Args:
        arch: ``"hrnet_w32"`` or ``"hrnet_w48"``.
        num_joints: ``K``, the number of heatmaps.
        width: channel multiplier (``1.0`` is the paper's network).

    Raises:
        ValueError: on an unknown ``arch``, ``num_joints < 1`` or ``width <= 0``.

    Example:
        >>> import torch
        >>> model = HRNet("hrnet_w48", num_joints=14, width=0.125)
        >>> [name for name, _ in model.named_children()][:4]
        ['stem', 'layer1', 'transition1', 'stage2']
        >>> model(torch.zeros(1, 3, 96, 64)).shape
        torch.Size([1, 14, 24, 16])
    """

    #: Pose-MUM's default mixing points: the input, the stem, every branch of stages 2-3.
    MIX_AT: tuple[str, ...] = ("", "stem", "stage2", "stage3")
    #: Pose-MUM's default unmix point: the stage-4 output, before the head.
    UNMIX_AT = "stage4"
    #: The children after the backbone (see :func:`sshpe.models.load_pretrained`).
    HEAD: tuple[str, ...] = ("head",)

    def __init__(
        self, arch: HRNetArch = "hrnet_w32", num_joints: int = 17, width: float = 1.0
    ) -> None:
        super().__init__()
        check_network_args(arch, _WIDTHS, num_joints, width)
        self.arch = arch
        self.num_joints = num_joints
        self.width = width

        def scaled(c: int) -> int:
            return max(4, round(c * width))

        stem = scaled(64)
        self.stem = nn.Sequential(
            *_conv_bn(3, stem, 3, 2), nn.ReLU(inplace=True),
            *_conv_bn(stem, stem, 3, 2), nn.ReLU(inplace=True),
        )  # fmt: skip
        planes = scaled(64)
        self.layer1 = nn.Sequential(
            *(Bottleneck(stem if i == 0 else planes * 4, planes) for i in range(_BLOCKS))
        )
        branches = [scaled(_WIDTHS[arch] * 2**i) for i in range(4)]
        self.transition1 = Transition([planes * 4], branches[:2])
        self.stage2 = self._stage(branches[:2], _MODULES[0], last=False)
        self.transition2 = Transition(branches[:2], branches[:3])
        self.stage3 = self._stage(branches[:3], _MODULES[1], last=False)
        self.transition3 = Transition(branches[:3], branches)
        self.stage4 = self._stage(branches, _MODULES[2], last=True)
        self.head = nn.Conv2d(branches[0], num_joints, 1)
        init_pose_weights(self, self.head)

    @staticmethod
    def _stage(channels: list[int], modules: int, *, last: bool) -> nn.Sequential:
        return nn.Sequential(
            *(
                HighResolutionModule(channels, _BLOCKS, not (last and m == modules - 1))
                for m in range(modules)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        """Heatmaps ``(B, K, H/4, W/4)`` for normalised crops ``(B, 3, H, W)``."""
        y = self.layer1(self.stem(x))
        branches = self.stage2(self.transition1([y]))
        branches = self.stage3(self.transition2(branches))
        branches = self.stage4(self.transition3(branches))
        heatmaps: Tensor = self.head(branches[0])
        return heatmaps


def classifier_state(
    state: Mapping[str, Tensor], model: HRNet
) -> tuple[dict[str, Tensor], list[str]]:
    """An ImageNet HRNet classifier's (or the pose HRNet release's) state dict in
    ``model``'s names.

    The common releases (``conv1, bn1, conv2, bn2, layer1, transition1, stage2, ...``) share
    the backbone with the pose network; the stem is renamed, the classifier's head
    (``incre_modules``, ``downsamp_modules``, ``final_layer.*``, ``classifier``) is dropped,
    and so are the fuse rows into branches 2-4 of the last stage-4 module, which the pose
    network does not compute. The pose release (``pose_hrnet_w32_256x192.pth``, ...) names
    its 1x1 heatmap head ``final_layer.weight`` / ``final_layer.bias``: that is ``model``'s
    ``head`` where the shapes match (the same joints), else the head is skipped.

    Args:
        state: the classifier's entries.
        model: the network they are for.

    Returns:
        ``(entries, skipped)``: the backbone entries (and the pose release's head) under
        ``model``'s names (not checked: the caller compares them with the model), and the
        model's entries the file cannot give (the heatmap head of a classifier, or of
        another number of joints), left at their initialisation.

    Example:
        >>> import torch
        >>> model = HRNet(width=0.125)
        >>> entries, skipped = classifier_state(
        ...     {"conv2.weight": torch.zeros(1), "classifier.bias": torch.zeros(1)}, model)
        >>> list(entries), skipped
        (['stem.3.weight'], ['head.weight', 'head.bias'])
    """
    last = f"stage4.{len(model.stage4) - 1}.fuse_layers."
    own = model.state_dict()
    names = {"head." + k: "final_layer." + k for k in ("weight", "bias")}
    entries = {k: state[v] for k, v in names.items() if v in state}  # the pose release's head
    if len(entries) < len(names) or any(v.shape != own[k].shape for k, v in entries.items()):
        entries = {}
    for key, value in state.items():
        lower_rows = key.startswith(last) and not key.startswith(last + "0.")
        if key.startswith(_CLASSIFIER_HEAD) or lower_rows:
            continue
        old = next((old for old in _STEM_NAMES if key.startswith(old)), None)
        entries[key if old is None else _STEM_NAMES[old] + key[len(old) :]] = value
    return entries, [k for k in own if k.startswith("head.") and k not in entries]
