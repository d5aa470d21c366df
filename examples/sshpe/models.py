"""The trainer's pose networks: SimpleBaseline (Xiao et al., ECCV 2018) with ResNet backbones
written here, HRNet (:mod:`sshpe.hrnet`), and :func:`build_model` to pick one by name.

No torchvision and no downloads: the ResNet-18 / ResNet-50 backbones are defined in this
file (their blocks in :mod:`sshpe.blocks`), with a width multiplier so that the default
synthetic job trains on a laptop CPU. The network's children are named stages, in forward
order::

    stem -> layer1 -> layer2 -> layer3 -> layer4 -> deconv -> head

so :meth:`posemum_aug.mix.PoseMUM.attach` can mix at the input (``""``) and after
``layer1``..``layer3`` and unmix after ``layer4``, before the deconvolution head
(:func:`mix_points` gives each network's default points).

Example:
    >>> import torch
    >>> model = SimpleBaseline("resnet18", num_joints=17, width=0.25)
    >>> model(torch.zeros(2, 3, 128, 96)).shape
    torch.Size([2, 17, 32, 24])
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from sshpe.blocks import BasicBlock, Bottleneck, check_network_args, init_pose_weights
from sshpe.errors import error_reason
from sshpe.hrnet import HRNet, classifier_state

ResNetArch = Literal["resnet18", "resnet50"]
#: Every network of ``--arch``.
Arch = Literal["resnet18", "resnet50", "hrnet_w32", "hrnet_w48"]

#: Blocks per stage of each backbone (He et al., 2016).
_DEPTHS: dict[str, tuple[int, int, int, int]] = {
    "resnet18": (2, 2, 2, 2),
    "resnet50": (3, 4, 6, 3),
}


class SimpleBaseline(nn.Module):
    """ResNet backbone + 3 deconvolutions (4x4, stride 2, BN, ReLU) + 1x1 heatmap head.

    Heatmaps come out at stride 4: a ``(B, 3, H, W)`` crop gives ``(B, K, H/4, W/4)``
    (``H`` and ``W`` multiples of 32). Stage channels are ``64, 128, 256, 512`` (times 4
    for ResNet-50) and the deconvolutions have 256 channels, all scaled by ``width`` (at
    least 4).

    Args:
        arch: ``"resnet18"`` (BasicBlock) or ``"resnet50"`` (Bottleneck).
        num_joints: ``K``, the number of heatmaps.
        width: channel multiplier (``1.0`` is the paper's network; ``0.25`` trains on a CPU).

    Raises:
        ValueError: on an unknown ``arch``, ``num_joints < 1`` or ``width <= 0``.

    Example:
        >>> import torch
        >>> model = SimpleBaseline("resnet50", num_joints=14, width=0.125)
        >>> [name for name, _ in model.named_children()]
        ['stem', 'layer1', 'layer2', 'layer3', 'layer4', 'deconv', 'head']
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 14, 16, 16])
    """

    #: Pose-MUM's default mixing points: the input and ``layer1``..``layer3``.
    MIX_AT: tuple[str, ...] = ("", "layer1", "layer2", "layer3")
    #: Pose-MUM's default unmix point: ``layer4``, before the deconvolutions.
    UNMIX_AT = "layer4"
    #: The children after the backbone (see :func:`load_pretrained`'s ``keep_head``).
    HEAD: tuple[str, ...] = ("deconv", "head")

    def __init__(
        self, arch: ResNetArch = "resnet18", num_joints: int = 17, width: float = 1.0
    ) -> None:
        super().__init__()
        check_network_args(arch, _DEPTHS, num_joints, width)
        self.arch = arch
        self.num_joints = num_joints
        self.width = width
        block: type[BasicBlock | Bottleneck] = BasicBlock if arch == "resnet18" else Bottleneck
        channels = [max(4, round(c * width)) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels[0], 7, 2, 3, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        in_channels = channels[0]
        stages = []
        for i, (c, depth) in enumerate(zip(channels, _DEPTHS[arch], strict=True)):
            blocks = []
            for j in range(depth):
                blocks.append(block(in_channels, c, stride=2 if i > 0 and j == 0 else 1))
                in_channels = c * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        deconv_channels = max(4, round(256 * width))
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [
                nn.ConvTranspose2d(in_channels, deconv_channels, 4, 2, 1, bias=False),
                nn.BatchNorm2d(deconv_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = deconv_channels
        self.deconv = nn.Sequential(*layers)
        self.head = nn.Conv2d(deconv_channels, num_joints, 1)
        init_pose_weights(self, self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Heatmaps ``(B, K, H/4, W/4)`` for normalised crops ``(B, 3, H, W)``."""
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        heatmaps: torch.Tensor = self.head(self.deconv(x))
        return heatmaps


#: A network of :func:`build_model`.
PoseNet = SimpleBaseline | HRNet


def build_model(arch: Arch, num_joints: int, width: float = 1.0) -> PoseNet:
    """The network ``arch`` (``--arch``) with ``num_joints`` heatmaps and a channel multiplier.

    Args:
        arch: ``"resnet18"`` or ``"resnet50"`` (:class:`SimpleBaseline`), ``"hrnet_w32"``
            or ``"hrnet_w48"`` (:class:`~sshpe.hrnet.HRNet`).
        num_joints: ``K``.
        width: channel multiplier (1 = the paper's network).

    Returns:
        The network, heatmaps ``(B, K, H/4, W/4)`` from ``(B, 3, H, W)`` crops.

    Raises:
        ValueError: on an unknown ``arch`` or a bad ``num_joints`` / ``width``.

    Example:
        >>> type(build_model("hrnet_w32", 17, 0.125)).__name__
        'HRNet'
    """
    if arch in ("hrnet_w32", "hrnet_w48"):
        return HRNet(arch, num_joints, width)
    if arch in ("resnet18", "resnet50"):
        return SimpleBaseline(arch, num_joints, width)
    raise ValueError(f"arch must be one of resnet18, resnet50, hrnet_w32, hrnet_w48, got {arch!r}")


def mix_points(arch: Arch) -> tuple[tuple[str, ...], str]:
    """The default Pose-MUM ``(mix_at, unmix_at)`` of the network ``arch``.

    Example:
        >>> mix_points("hrnet_w48")
        (('', 'stem', 'stage2', 'stage3'), 'stage4')
    """
    network = HRNet if arch.startswith("hrnet") else SimpleBaseline
    return network.MIX_AT, network.UNMIX_AT


def load_pretrained(model: PoseNet, path: str | Path, *, keep_head: bool = False) -> list[str]:
    """Load user-supplied weights into ``model``, checking every name and shape.

    Two layouts are accepted:

    - a SimpleBaseline state dict, bare or inside a training checkpoint of
      ``examples/train.py`` (its ``"student"`` entry) or under ``"state_dict"`` / ``"model"``
      (a ``"module."`` prefix from DistributedDataParallel is stripped). Every tensor must
      match; only the heatmap ``head`` may differ, when the file was trained for another
      number of joints: it is then left at its initialisation and reported.
    - an ImageNet ResNet classifier in the common ``conv1 / bn1 / layer1..4 / fc`` layout
      (as saved by most model zoos, with ``width=1.0``): the backbone is loaded, ``fc`` is
      dropped and the deconvolutions and head keep their initialisation.
    - for an :class:`~sshpe.hrnet.HRNet`, an ImageNet HRNet classifier of the common
      releases (``conv1, bn1, conv2, bn2, layer1, transition1, stage2, ...``): the backbone
      is loaded, the classifier's head is dropped (:func:`~sshpe.hrnet.classifier_state`)
      and the heatmap head keeps its initialisation; or the pose HRNet release in the same
      names, whose ``final_layer`` is the heatmap head (loaded for the same joints).

    Args:
        model: the network to fill in place.
        path: a file written by ``torch.save``.
        keep_head: load the backbone only: the children after it (``model.HEAD``:
            SimpleBaseline's ``deconv`` and ``head``, HRNet's ``head``) keep their
            initialisation whatever the file holds (network B of the dual methods).

    Returns:
        The names of the model's tensors that were *not* loaded (empty for a full match).

    Raises:
        ValueError: if the file cannot be read, or a name is missing, unexpected or has
            another shape; the message lists the first offending names.
    """
    if Path(path).stat().st_size == 0:
        raise ValueError(f"cannot read pretrained weights {str(path)!r}: the file is empty")
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as err:  # any bytes reach the unpickler: KeyError, ValueError, ...
        raise ValueError(
            f"cannot read pretrained weights {str(path)!r}: not a file written by torch.save, "
            f"or damaged ({error_reason(err)})"
        ) from None
    state = _find_state_dict(obj, path)
    own = model.state_dict()
    if any(k.startswith("stem.") for k in state):
        skip = [k for k in own if k.startswith("head.")]
        if all(k in state and state[k].shape == own[k].shape for k in skip):
            skip = []
    elif "conv1.weight" in state and isinstance(model, HRNet):
        state, skip = classifier_state(state, model)
    elif "conv1.weight" in state:
        rename = {"conv1.": "stem.0.", "bn1.": "stem.1."}
        state = {
            next((new + k[len(old) :] for old, new in rename.items() if k.startswith(old)), k): v
            for k, v in state.items()
            if not k.startswith("fc.")
        }
        skip = [k for k in own if k.startswith(("deconv.", "head."))]
    else:
        raise ValueError(
            f"{str(path)!r} holds neither a {type(model).__name__} nor an ImageNet classifier "
            f"state dict (first keys: {list(state)[:3]})"
        )
    if keep_head:
        skip += [k for k in own if k.split(".")[0] in model.HEAD and k not in skip]
    expected = {k: v for k, v in own.items() if k not in skip}
    state = {k: v for k, v in state.items() if k not in skip}
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k} has shape {tuple(v.shape)}, the model needs {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(
            f"pretrained weights {str(path)!r} do not fit {model.arch} width {model.width} "
            f"with {model.num_joints} joints: {'; '.join(problems[:3])}{more}"
        )
    model.load_state_dict(state, strict=False)
    return skip


def _find_state_dict(obj: object, path: str | Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("student", "state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ValueError(f"{str(path)!r} does not contain a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}
