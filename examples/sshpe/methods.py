"""The per-step losses of the SSHPE methods, with batched augmentation on the device.

* ``supervised``: labelled crops only. Easy view (random scale, rotation, flip), Gaussian
  targets, joint-weighted MSE. An EMAN copy of the student is kept for evaluation only.
* ``consistency``: SSHPE's PoseCons (Xie et al., ICCV 2021) with a classic mean teacher.
  The teacher predicts heatmaps on the unlabelled easy view; the hard view is the easy
  view with optional Joint Cutout at the teacher's peaks and an extra affine, and the same
  affine warps the teacher's heatmaps into the hard view; the student's hard-view output
  is fitted with MSE. Loss = supervised + ``unsup_weight`` x unsupervised (weight 1).
* ``posemum``: ``consistency`` + Pose-MUM tile mixing of the unlabelled hard view (input
  level, plus stochastic feature-level re-mixing, unmixed before the head) + an
  :class:`~posemum_aug.teacher.EMANTeacher` + optional pseudo-label filters.
* ``dual``: SSHPE's PoseDual. Two networks of the same architecture and their own
  initialisations, each the other's teacher: the unlabelled easy view goes through network
  A to make the targets of network B's hard view and through B to make A's (in training
  mode, without gradient), so each network's Joint Cutout sits at the *other* network's
  peaks. Both fit the same labelled view; each draws its own hard view. Loss = the sum of
  the two networks' ``consistency`` losses. Each network keeps an EMAN copy for evaluation
  only, as ``supervised`` does.
* ``posemum_dual``: ``dual`` + Pose-MUM tile mixing of each network's hard view, with a
  Pose-MUM and tile plans of its own (the frame of MultiAugs, Wang et al., 2024).

The two teachers, both from :mod:`posemum_aug.teacher`, differ in how BatchNorm is treated,
the point of EMAN (Cai et al., 2021): :class:`~posemum_aug.teacher.MeanTeacher` averages
parameters only and runs in train mode, so its BatchNorm normalises with the statistics of
the batch it sees (and keeps its own running statistics for evaluation);
:class:`~posemum_aug.teacher.EMANTeacher` averages parameters *and* BatchNorm statistics and
always runs in eval mode. ``--teacher`` swaps them for ablations.

The views are the library's transform results
(:class:`~posemum_aug.transforms.PoseTransformResult`): the easy view is a
:class:`~posemum_aug.transforms.RandomPoseAffine` result followed by an
:func:`~posemum_aug.transforms.apply_pose_flip` result, whose ``params`` (the matrices and
the flip flags) replay it.

Every random draw comes from a CPU ``torch.Generator`` owned by :class:`SSHPEMethod`, one
per kind of draw (:data:`STREAMS`: the labelled easy view, the unlabelled easy view, Joint
Cutout, the hard view's affine, the tile plans), so a step is a pure function of the model
state, the batch and those generators' states: that is what makes ``--resume`` exact. The
streams are independent so that the methods are *paired*: with one seed, ``supervised``,
``consistency`` and ``posemum`` draw the same labelled views, and ``consistency`` and
``posemum`` the same unlabelled views, cutout draws and hard affines, whatever Pose-MUM's
plans consume. The dual methods keep the pairing for their first network, A: it draws from
:data:`STREAMS` exactly what the single network of the other methods draws (and starts from
the same weights), while network B's own cutout, hard affine and tile plans come from the
streams of :data:`PARTNER_STREAMS`; the two share the labelled and unlabelled easy views.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Literal, cast

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from posemum_aug.batchnorm import frozen_running_stats
from posemum_aug.filters import confidence_weights, flip_consistency_weights, hard_targets
from posemum_aug.heatmap import decode_heatmaps, render_heatmaps
from posemum_aug.keypoints import Skeleton
from posemum_aug.mix import MixHandle, PoseMUM
from posemum_aug.teacher import (
    EMANTeacher,
    MeanTeacher,
    MomentumSchedule,
    constant_momentum,
    linear_warmup_momentum,
)
from posemum_aug.transforms import (
    JointCutout,
    PoseTransformResult,
    RandomPoseAffine,
    apply_pose_flip,
    compose_affine,
    flip_matrix,
    heatmap_stride,
    sample_pose_flip,
)
from sshpe.models import SimpleBaseline
from sshpe.runtime import seeded_generator

Method = Literal["supervised", "consistency", "posemum", "dual", "posemum_dual"]
METHODS: tuple[Method, ...] = ("supervised", "consistency", "posemum", "dual", "posemum_dual")

#: The kinds of random draw of a step, each from a generator of its own
#: (:func:`step_generators`).
STREAMS = ("labeled_view", "unlabeled_view", "cutout", "hard_view", "mixing")
#: The draws of the dual methods' second network: its Joint Cutout, hard view and tile plans.
PARTNER_STREAMS = ("cutout_b", "hard_view_b", "mixing_b")


def step_generators(
    seed: int, rank: int = 0, streams: Sequence[str] = STREAMS
) -> dict[str, torch.Generator]:
    """One CPU generator per stream, seeded from ``(seed, rank, stream)``.

    A stream's seed depends on its name only (its place in :data:`STREAMS` +
    :data:`PARTNER_STREAMS`), not on the other streams asked for.

    Args:
        seed: the run's seed.
        rank: the process's rank (each process draws its own augmentation).
        streams: the streams (:attr:`MethodConfig.streams`).

    Returns:
        ``{stream: generator}``, distinct well-mixed streams.

    Raises:
        ValueError: on an unknown stream.

    Example:
        >>> a, b = step_generators(0), step_generators(0)
        >>> torch.equal(a["mixing"].get_state(), b["mixing"].get_state())
        True
        >>> torch.equal(a["mixing"].get_state(), a["cutout"].get_state())
        False
    """
    every = STREAMS + PARTNER_STREAMS
    unknown = [name for name in streams if name not in every]
    if unknown:
        raise ValueError(f"unknown streams {unknown}; known: {every}")
    return {name: seeded_generator(seed, rank, every.index(name)) for name in streams}


@dataclass(frozen=True)
class MethodConfig:
    """Every option of a training step, with the defaults of METHOD.md / SSHPE.

    Attributes:
        method: ``"supervised"``, ``"consistency"``, ``"posemum"``, ``"dual"`` (PoseDual:
            two networks, each the other's teacher) or ``"posemum_dual"`` (``"dual"`` with
            Pose-MUM mixing).
        sigma: Gaussian target sigma in heatmap pixels (SSHPE: 2).
        unbiased: centre target Gaussians on the exact sub-pixel keypoint (DARK / UDP)
            instead of its nearest heatmap pixel (SimpleBaseline); paired with DARK
            decoding this removes the quantisation error of small heatmaps.
        scale_sigma: std of the crop scale of both views (SSHPE: 0.25).
        scale_range: clip of the crop scale (SSHPE: 0.75 to 1.25).
        rotation_sigma: std of the rotation in degrees (SSHPE: 30).
        rotation_limit: clip of the rotation in degrees (SSHPE: 60).
        rotation_p: probability of rotating the easy view (SSHPE: 0.6).
        hard_rotation_p: probability of rotating the hard view's extra affine (SSHPE: 0.8).
        flip_p: probability of the easy view's horizontal flip (SSHPE: 0.5).
        joint_cutout: Joint Cutout on the hard view (SSHPE's "+JC").
        cutout_joints: boxes per sample, joints picked with replacement (SSHPE: 5).
        cutout_jitter: std of a box centre's offset in input pixels (SSHPE: 10 px).
        cutout_half_size: ``(low, high)`` integer half side in input pixels (SSHPE: 10-19).
        unsup_weight: weight of the unsupervised loss (SSHPE: 1).
        burn_in: supervised-only steps at the start of a semi-supervised run; the teacher
            copies the student during them (momentum 0) and averages from then on, as in
            MUM's and Unbiased Teacher's burn-in (0: off, SSHPE).
        unsup_ramp: steps after the burn-in over which the unsupervised weight rises
            linearly from 1 / ``unsup_ramp`` of ``unsup_weight`` to ``unsup_weight`` (0:
            off).
        hard_bn_stats: whether the student's pass on the unlabelled hard view updates its
            BatchNorm running statistics (``"update"``, plain training mode as in SSHPE
            and EMAN) or only normalises with the batch's (``"frozen"``, the default,
            :func:`~posemum_aug.batchnorm.frozen_running_stats`), so that the running
            statistics, and an EMAN teacher's average of them, come from the clean
            labelled views alone. With ``"update"`` an EMAN teacher's heatmaps are much
            flatter than on batch statistics (see examples/README.md). In the dual
            methods it also rules each network's pass on the easy view that makes the
            other's targets.
        teacher: ``"ema"`` (:class:`~posemum_aug.teacher.MeanTeacher`) or ``"eman"``
            (:class:`~posemum_aug.teacher.EMANTeacher`) (default: ``"ema"`` for
            ``consistency`` and ``"eman"`` otherwise; for ``supervised`` and the dual
            methods, the copy kept for evaluation).
        momentum: teacher EMA momentum, the weight kept on the teacher (EMAN: 0.999).
        momentum_warmup: steps of MUM's linear momentum ramp from ``momentum_start``; 0 = off.
        momentum_start: momentum at step 0 of the ramp (MUM: 0.5).
        mix_group: ``G``, samples mixed together (MUM: 4).
        mix_grid: ``(Th, Tw)`` tile grid (MUM: 4 x 4).
        mix_p: probability of input-level mixing per step.
        mix_p_feature: probability of a feature-level re-mix (0.5).
        mix_feature_mode: ``"one"`` re-mixes at most one point per step, ``"all"`` flips a
            coin at every point.
        mix_at: mixing points: ``""`` (input) and stage names; the first reached starts
            the chain, the others are feature-level points. The trainer's default follows
            ``arch`` (sshpe.models.mix_points).
        unmix_at: the stage whose output is unmixed, before the heatmap head.
        mix_labeled: also mix the labelled batch (MUM: no).
        confidence: keep joints whose teacher peak reaches this (``None``: no filter).
        confidence_mode: ``"absolute"`` peak value or per-joint ``"percentile"`` of the batch.
        flip_consistency: keep joints whose teacher peaks on the easy view and its mirror
            lie within this many heatmap pixels (``None``: no filter; one more teacher pass).
        hard_targets: replace the soft teacher heatmaps by Gaussians at their peaks.
        hard_threshold: peak a joint needs to get a hard target.
        decode: sub-pixel refinement for peaks (cutout centres, filters, predictions).
    """

    method: Method = "posemum"
    sigma: float = 2.0
    unbiased: bool = field(default=True, metadata={"flag": "--unbiased-targets"})
    scale_sigma: float = 0.25
    scale_range: tuple[float, float] = field(
        default=(0.75, 1.25), metadata={"metavar": ("LOW", "HIGH")}
    )
    rotation_sigma: float = 30.0
    rotation_limit: float = 60.0
    rotation_p: float = 0.6
    hard_rotation_p: float = 0.8
    flip_p: float = 0.5
    joint_cutout: bool = True
    cutout_joints: int = 5
    cutout_jitter: float = 10.0
    cutout_half_size: tuple[int, int] = field(
        default=(10, 19), metadata={"metavar": ("LOW", "HIGH")}
    )
    unsup_weight: float = 1.0
    burn_in: int = 0
    unsup_ramp: int = 0
    hard_bn_stats: Literal["update", "frozen"] = "frozen"
    teacher: Literal["ema", "eman"] | None = None
    momentum: float = field(default=0.999, metadata={"flag": "--ema-momentum"})
    momentum_warmup: int = 0
    momentum_start: float = 0.5
    mix_group: int = field(default=4, metadata={"metavar": "G"})
    mix_grid: tuple[int, int] = field(default=(4, 4), metadata={"metavar": ("TH", "TW")})
    mix_p: float = 1.0
    mix_p_feature: float = 0.5
    mix_feature_mode: Literal["one", "all"] = "one"
    mix_at: tuple[str, ...] = field(default=SimpleBaseline.MIX_AT, metadata={"metavar": "NAME"})
    unmix_at: str = SimpleBaseline.UNMIX_AT
    mix_labeled: bool = False
    confidence: float | None = field(
        default=None, metadata={"flag": "--filter-confidence", "metavar": "T"}
    )
    confidence_mode: Literal["absolute", "percentile"] = field(
        default="absolute", metadata={"flag": "--filter-mode"}
    )
    flip_consistency: float | None = field(
        default=None, metadata={"flag": "--filter-flip", "metavar": "PX"}
    )
    hard_targets: bool = False
    hard_threshold: float = 0.1
    decode: Literal["dark", "quarter", "none"] = "dark"

    def __post_init__(self) -> None:
        """Reject values no step can use, naming the option by its command-line flag."""
        from sshpe.config import flag_of as _flag  # sshpe.config imports this module

        at_least: dict[str, float] = {
            "burn_in": 0, "unsup_ramp": 0, "momentum_warmup": 0, "cutout_joints": 0,
            "unsup_weight": 0, "scale_sigma": 0, "rotation_sigma": 0, "rotation_limit": 0,
            "cutout_jitter": 0, "hard_threshold": 0, "mix_group": 1,
        }  # fmt: skip
        for name, low in at_least.items():
            value = getattr(self, name)
            if not value >= low:
                raise ValueError(f"{_flag(name)} must be >= {low}, got {value}")
        probabilities = (
            "rotation_p", "hard_rotation_p", "flip_p", "momentum", "momentum_start", "mix_p",
            "mix_p_feature",
        )  # fmt: skip
        for name in probabilities:
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{_flag(name)} must be in [0, 1], got {value}")
        if min(self.mix_grid) < 1:
            raise ValueError(f"{_flag('mix_grid')} must be >= 1 tiles, got {self.mix_grid}")
        if not self.mix_at:
            raise ValueError(f"{_flag('mix_at')} needs at least one mixing point")
        if not self.sigma > 0:
            raise ValueError(f"{_flag('sigma')} must be > 0, got {self.sigma}")
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"{_flag('scale_range')} must be 0 < LOW <= HIGH, got {low} {high}")
        low_px, high_px = self.cutout_half_size
        if not 0 <= low_px <= high_px:
            raise ValueError(
                f"{_flag('cutout_half_size')} must be 0 <= LOW <= HIGH, got {low_px} {high_px}"
            )

    @property
    def semi_supervised(self) -> bool:
        """Whether the method trains on unlabelled data."""
        return self.method != "supervised"

    @property
    def dual(self) -> bool:
        """Whether the method trains two networks, each the other's teacher."""
        return self.method in ("dual", "posemum_dual")

    @property
    def mixing(self) -> bool:
        """Whether the method mixes tiles (Pose-MUM)."""
        return self.method in ("posemum", "posemum_dual")

    @property
    def networks(self) -> int:
        """How many networks the method trains."""
        return 2 if self.dual else 1

    @property
    def streams(self) -> tuple[str, ...]:
        """The random streams of a step: :data:`STREAMS`, plus :data:`PARTNER_STREAMS` for
        the dual methods."""
        return STREAMS + PARTNER_STREAMS if self.dual else STREAMS

    @property
    def teacher_kind(self) -> Literal["ema", "eman"]:
        """The teacher actually used (see :attr:`teacher`)."""
        if self.teacher is not None:
            return self.teacher
        return "ema" if self.method == "consistency" else "eman"


def scaled_cutout(input_height: int) -> tuple[float, tuple[int, int]]:
    """SSHPE's Joint Cutout jitter and half sizes (10 px, 10-19 px at 256 px) for a crop height.

    Args:
        input_height: ``H`` of the network input.

    Returns:
        ``(jitter, (low, high))`` in input pixels, at least 1 px each.

    Example:
        >>> scaled_cutout(256), scaled_cutout(128)
        ((10.0, (10, 19)), (5.0, (5, 10)))
    """
    ratio = input_height / 256
    return 10.0 * ratio, (max(1, round(10 * ratio)), max(1, round(19 * ratio)))


def scaled_sigma(input_height: int) -> float:
    """SSHPE's target sigma (2 heatmap px at 256 px) scaled to a crop height.

    This is the SimpleBaseline / HRNet rule: sigma 2 at 256 x 192 and 3 at 384 x 288.

    Args:
        input_height: ``H`` of the network input.

    Returns:
        Sigma in heatmap pixels.

    Example:
        >>> scaled_sigma(256), scaled_sigma(384)
        (2.0, 3.0)
    """
    return 2.0 * input_height / 256


def joint_mse(pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """SimpleBaseline's joint-weighted heatmap MSE: ``0.5 * mean(w_bk * (pred - target)^2)``.

    Args:
        pred: ``(B, K, h, w)`` predicted heatmaps (any floating dtype; computed in float32).
        target: ``(B, K, h, w)`` target heatmaps.
        weights: ``(B, K)`` per-joint weights (0 drops a joint).

    Returns:
        A scalar tensor.

    Example:
        >>> import torch
        >>> pred, target = torch.ones(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
        >>> joint_mse(pred, target, torch.tensor([[1.0, 0.0]]))
        tensor(0.2500)
    """
    diff = (pred.float() - target.float()).square().mean(dim=(-2, -1))
    return 0.5 * (diff * weights.float()).mean()


def view_matrix(affine: PoseTransformResult[Tensor], flip: PoseTransformResult[Tensor]) -> Tensor:
    """The map from base-crop pixels to an easy view's pixels, flip included.

    Args:
        affine: the view's :class:`~posemum_aug.transforms.RandomPoseAffine` result
            (``params``: ``(B, 2, 3)`` matrices).
        flip: the :func:`~posemum_aug.transforms.apply_pose_flip` result on it
            (``params``: ``(B,)`` bool flags).

    Returns:
        ``(B, 2, 3)`` matrices, in ``affine.params``' dtype. The joint swap of flipped
        samples is not included: joint ``k`` of a flipped view is joint
        ``flip_index[k]`` of the base crop.

    Example:
        >>> import torch
        >>> from posemum_aug.transforms import apply_pose_affine
        >>> image = torch.zeros(1, 1, 2, 4)
        >>> affine = apply_pose_affine(image, torch.eye(2, 3)[None])
        >>> flip = apply_pose_flip(affine.image, torch.tensor([True]), [0])
        >>> view_matrix(affine, flip)
        tensor([[[-1.,  0.,  3.],
                 [ 0.,  1.,  0.]]])
    """
    flips = flip_matrix(flip.image.shape[-1], flip.params, dtype=affine.params.dtype)
    return compose_affine(affine.params, flips)


@dataclass(frozen=True)
class PseudoLabels:
    """What the last unlabelled step fitted the student to, kept for diagnostics.

    Attributes:
        affine: the easy view's affine (its ``params`` map base crops into it).
        view: the easy view the teacher saw, the flip of ``affine.image`` (its ``params``
            are the flip flags).
        targets: ``(B, K, h, w)`` the teacher's heatmaps on that view (after filters'
            hard targets, before the hard view's warp).
        weights: ``(B, K)`` the filters' per-joint weights.
    """

    affine: PoseTransformResult[Tensor]
    view: PoseTransformResult[Tensor]
    targets: Tensor
    weights: Tensor

    @property
    def matrix(self) -> Tensor:
        """``(B, 2, 3)`` base-crop pixels to view pixels (:func:`view_matrix`)."""
        return view_matrix(self.affine, self.view)

    @property
    def flipped(self) -> Tensor:
        """``(B,)`` bool, the samples whose left and right joints were swapped."""
        return self.view.params


Teacher = MeanTeacher | EMANTeacher


def build_teacher(student: nn.Module, config: MethodConfig) -> Teacher:
    """The teacher of ``config`` (see :attr:`MethodConfig.teacher`), a copy of ``student``.

    Args:
        student: the student network (possibly DDP-wrapped).
        config: the method's options (teacher kind, momentum, warm-up).

    Returns:
        A :class:`~posemum_aug.teacher.MeanTeacher` or an
        :class:`~posemum_aug.teacher.EMANTeacher`.
    """
    schedule: MomentumSchedule | None = None
    if config.momentum_warmup > 0:
        schedule = functools.partial(
            linear_warmup_momentum,
            warmup_steps=config.momentum_warmup,
            start=config.momentum_start,
        )
    if config.burn_in > 0:
        schedule = functools.partial(
            burn_in_momentum, burn_in=config.burn_in, schedule=schedule or constant_momentum
        )
    if config.teacher_kind == "ema":
        return MeanTeacher(student, config.momentum, schedule)
    return EMANTeacher(student, config.momentum, schedule)


def burn_in_momentum(
    step: int, momentum: float, *, burn_in: int, schedule: MomentumSchedule
) -> float:
    """Momentum 0 (the teacher copies the student) for ``burn_in`` steps, then ``schedule``
    counted from the end of the burn-in.

    Example:
        >>> from posemum_aug.teacher import constant_momentum
        >>> [burn_in_momentum(s, 0.99, burn_in=2, schedule=constant_momentum) for s in range(4)]
        [0.0, 0.0, 0.99, 0.99]
    """
    return 0.0 if step < burn_in else schedule(step - burn_in, momentum)


def unwrap(module: nn.Module) -> nn.Module:
    """``module``, or the network inside a ``DistributedDataParallel`` wrapper."""
    return module.module if isinstance(module, DistributedDataParallel) else module


@dataclass(eq=False)
class Learner:
    """One network under training: the student, its teacher, its hard view's own draws.

    A single-network method has one learner; ``dual`` and ``posemum_dual`` have two, each
    fitted on its hard view to the other's heatmaps (see :class:`SSHPEMethod`).

    Attributes:
        name: ``"student"`` or ``"student_b"``, the network's key in checkpoints, results
            and :attr:`SSHPEMethod.models`; its teacher's is ``"teacher"`` / ``"teacher_b"``.
        student: the network, possibly DDP-wrapped.
        teacher: its EMA copy (:func:`build_teacher`): the source of its pseudo-labels in
            ``consistency`` and ``posemum``, for evaluation only in the other methods.
        cutout: the Joint Cutout of its hard view.
        hard_affine: the extra affine of its hard view.
        mum: its Pose-MUM, attached to the student (the mixing methods), else ``None``.
        handle: the hooks of ``mum``.
    """

    name: str
    student: nn.Module
    teacher: Teacher
    cutout: JointCutout
    hard_affine: RandomPoseAffine
    mum: PoseMUM | None
    handle: MixHandle | None

    @classmethod
    def build(
        cls,
        student: nn.Module,
        config: MethodConfig,
        generators: dict[str, torch.Generator],
        suffix: str = "",
    ) -> Learner:
        """The learner of ``student``, drawing from the streams ``cutout``, ``hard_view``
        and ``mixing`` followed by ``suffix`` (``""``, or ``"_b"`` for the second network).

        Raises:
            ValueError: on mixing options the model cannot take, from
                :class:`~posemum_aug.mix.PoseMUM`.
        """
        teacher = build_teacher(student, config)  # before the hooks: a plain copy
        mum, handle = None, None
        if config.mixing:
            mum = PoseMUM(
                group_size=config.mix_group,
                grid=config.mix_grid,
                p=config.mix_p,
                p_feature=config.mix_p_feature,
                feature_mode=config.mix_feature_mode,
                generator=generators["mixing" + suffix],
            )
            handle = mum.attach(unwrap(student), config.mix_at, config.unmix_at)
        return cls(
            name="student" + suffix,
            student=student,
            teacher=teacher,
            cutout=JointCutout(
                config.cutout_joints,
                config.cutout_jitter,
                config.cutout_half_size,
                generator=generators["cutout" + suffix],
            ),
            hard_affine=_view_affine(
                config, config.hard_rotation_p, generators["hard_view" + suffix]
            ),
            mum=mum,
            handle=handle,
        )

    @property
    def suffix(self) -> str:
        """``""`` or ``"_b"``: appended to the names of this network's losses."""
        return self.name.removeprefix("student")

    def mixing(self, enabled: bool) -> AbstractContextManager[None]:
        """A context in which the student mixes only if ``enabled`` (and it has a Pose-MUM)."""
        if self.mum is None or enabled:
            return nullcontext()
        return self.mum.paused()

    def close(self) -> None:
        """Remove the mixing hooks from the student."""
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def _view_affine(
    config: MethodConfig, rotation_p: float, generator: torch.Generator
) -> RandomPoseAffine:
    return RandomPoseAffine(
        scale_sigma=config.scale_sigma,
        scale_range=config.scale_range,
        rotation_sigma=config.rotation_sigma,
        rotation_limit=config.rotation_limit,
        rotation_p=rotation_p,
        generator=generator,
    )


class SSHPEMethod:
    """One training step of any of :data:`METHODS`.

    Holds the learners (:class:`Learner`: one network, or two for ``dual`` and
    ``posemum_dual``, each with its teacher, Pose-MUM hooks and hard-view transforms) and the
    CPU generators of the random draws, one per stream of :attr:`MethodConfig.streams`.
    :meth:`losses` computes the step's losses (call ``backward`` on ``["loss"]``);
    :meth:`update_teacher` follows ``optimizer.step()``.

    One step, for every method: both networks (where there are two) fit the same labelled
    easy view; the unlabelled easy view is drawn once; each network's pseudo-labels are its
    teacher's heatmaps on that view, or, in the dual methods, the *other* network's (in
    training mode, mixing paused, no gradient), so Joint Cutout boxes sit at the other
    network's peaks; each network then fits its own hard view (its own cutout, affine and
    tile plans) to its pseudo-labels.

    Args:
        student: the network being trained (network A of the dual methods), possibly
            DDP-wrapped.
        config: the options.
        skeleton: joint layout (flip pairs).
        generators: CPU generators, one per stream of ``config.streams``
            (:func:`step_generators`).
        amp: run the forward passes under CUDA autocast (bfloat16).
        partner: network B of the dual methods (same architecture, its own
            initialisation), possibly DDP-wrapped; ``None`` for the others.

    Raises:
        ValueError: if ``generators`` lacks a stream or has an unknown one; if ``partner``
            is missing for a dual method, given for another method, or is ``student``
            itself; or on mixing options the model cannot take (unknown stage names, a bad
            group size or grid), raised by :class:`~posemum_aug.mix.PoseMUM`.
    """

    def __init__(
        self,
        student: nn.Module,
        config: MethodConfig,
        skeleton: Skeleton,
        generators: dict[str, torch.Generator],
        *,
        amp: bool = False,
        partner: nn.Module | None = None,
    ) -> None:
        if not isinstance(generators, dict) or sorted(generators) != sorted(config.streams):
            got = tuple(generators) if isinstance(generators, dict) else type(generators).__name__
            raise ValueError(
                f"generators must be a dict of the streams {config.streams} "
                f"(step_generators), got {got}"
            )
        if (partner is not None) != config.dual:
            needs = "needs a partner network" if config.dual else "takes no partner network"
            raise ValueError(f"method {config.method!r} {needs}")
        if partner is student:
            raise ValueError("partner must be another network than student")
        self.config = config
        self.skeleton = skeleton
        self.generators = generators
        self.amp = amp
        self.labeled_affine, self.unlabeled_affine = (
            _view_affine(config, config.rotation_p, generators[stream])
            for stream in ("labeled_view", "unlabeled_view")
        )
        self.learners = [Learner.build(student, config, generators)]
        if partner is not None:
            self.learners.append(Learner.build(partner, config, generators, "_b"))
        #: The pseudo-labels of the first network in the last unlabelled step, for
        #: diagnostics.
        self.last_pseudo: PseudoLabels | None = None

    @property
    def student(self) -> nn.Module:
        """The (first) network being trained, whose results are the method's."""
        return self.learners[0].student

    @property
    def teacher(self) -> Teacher:
        """The first network's teacher."""
        return self.learners[0].teacher

    @property
    def models(self) -> dict[str, nn.Module]:
        """Every network to checkpoint and evaluate, by its key: ``student``, ``teacher``,
        and ``student_b``, ``teacher_b`` for the dual methods (students unwrapped from DDP)."""
        return {
            name: module
            for learner in self.learners
            for name, module in (
                (learner.name, unwrap(learner.student)),
                ("teacher" + learner.suffix, learner.teacher),
            )
        }

    def train(self) -> None:
        """Put the students and teachers in training mode (EMAN teachers stay in eval mode)."""
        for learner in self.learners:
            learner.student.train()
            learner.teacher.train()

    def _autocast(self) -> AbstractContextManager[None]:
        if not self.amp:
            return nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16)

    def easy_view(
        self,
        image: Tensor,
        keypoints: Tensor | None = None,
        visibility: Tensor | None = None,
        *,
        stream: Literal["labeled_view", "unlabeled_view"],
    ) -> tuple[PoseTransformResult[Tensor], PoseTransformResult[Tensor]]:
        """SSHPE's easy view: random scale and rotation about the centre, then a flip.

        Args:
            image: ``(B, 3, H, W)`` base crops.
            keypoints: ``(B, K, 2)`` base-crop keypoints, or ``None``.
            visibility: ``(B, K)``, with ``keypoints``.
            stream: the generator the view draws from.

        Returns:
            ``(affine, view)``: the affine's result (``params``: ``(B, 2, 3)`` matrices) and
            the view, the flip's result on it (``image`` ``(B, 3, H, W)``, ``keypoints``
            ``(B, K, 2)`` and ``visibility`` ``(B, K)`` with the joints swapped where
            flipped; ``params``: ``(B,)`` bool flags). :func:`view_matrix` composes the two.
        """
        easy_affine = self.labeled_affine if stream == "labeled_view" else self.unlabeled_affine
        affine = easy_affine(image, keypoints, visibility)
        flags = sample_pose_flip(
            image.shape[0],
            self.config.flip_p,
            generator=self.generators[stream],
            device=image.device,
        )
        view = apply_pose_flip(
            affine.image, flags, self.skeleton.flip_index, affine.keypoints, affine.visibility
        )
        return affine, view

    def supervised_losses(
        self, image: Tensor, keypoints: Tensor, visibility: Tensor
    ) -> list[Tensor]:
        """Joint-weighted MSE of every network on one easy view of labelled crops.

        Args:
            image: ``(B, 3, H, W)`` base crops.
            keypoints: ``(B, K, 2)`` base-crop keypoints in input pixels.
            visibility: ``(B, K)`` COCO visibility (``> 0`` is labelled).

        Returns:
            A scalar loss per learner.
        """
        _, view = self.easy_view(image, keypoints, visibility, stream="labeled_view")
        keypoints, visibility = cast(Tensor, view.keypoints), cast(Tensor, view.visibility)
        losses = []
        for learner in self.learners:
            with learner.mixing(self.config.mix_labeled), self._autocast():
                pred = learner.student(view.image)
            target, weights = render_heatmaps(
                keypoints / heatmap_stride(image, pred),
                visibility,
                pred.shape[-2:],
                self.config.sigma,
                unbiased=self.config.unbiased,
            )
            losses.append(joint_mse(pred, target, weights))
        return losses

    @contextmanager
    def unmixed(self) -> Iterator[None]:
        """A context in which the students run without Pose-MUM mixing."""
        with ExitStack() as stack:
            for learner in self.learners:
                stack.enter_context(learner.mixing(False))
            yield

    def pseudo_label_network(self, index: int = 0) -> nn.Module:
        """The network whose heatmaps learner ``index`` fits: its teacher's network, or
        for the dual methods the other student (unwrapped from DDP), as it is."""
        if not self.config.dual:
            return self.learners[index].teacher.module
        return unwrap(self.learners[1 - index].student)

    @contextmanager
    def _pseudo_label_source(self, index: int) -> Iterator[nn.Module]:
        """The network whose heatmaps learner ``index`` fits, ready to run: its teacher, or
        the other network of a dual method (unwrapped, in training mode with its mixing
        paused and, unless ``hard_bn_stats="update"``, its running statistics frozen)."""
        if not self.config.dual:
            yield self.learners[index].teacher
            return
        network = unwrap(self.learners[1 - index].student)
        frozen = self.config.hard_bn_stats == "frozen"
        with (
            self.learners[1 - index].mixing(False),
            frozen_running_stats(network) if frozen else nullcontext(),
        ):
            yield network

    @torch.no_grad()
    def pseudo_labels(self, image: Tensor, index: int = 0) -> tuple[Tensor, Tensor]:
        """The pseudo-labels of learner ``index`` on ``image`` and the filters' weights.

        Args:
            image: ``(B, 3, H, W)`` easy views.
            index: the learner (0, or 1 for network B of the dual methods).

        Returns:
            ``(targets, weights)``: ``(B, K, h, w)`` heatmaps of its teacher (the other
            network for the dual methods) and ``(B, K)`` weights (ones without filters).
        """
        config = self.config
        with self._pseudo_label_source(index) as source, self._autocast():
            heatmaps = source(image).float()
            mirrored = None
            if config.flip_consistency is not None:
                mirrored = source(image.flip(-1)).float()
        weights = heatmaps.new_ones(heatmaps.shape[:2])
        if config.confidence is not None:
            weights = weights * confidence_weights(
                heatmaps, config.confidence, mode=config.confidence_mode
            )
        if config.flip_consistency is not None:
            weights = weights * flip_consistency_weights(
                heatmaps,
                cast(Tensor, mirrored),
                self.skeleton.flip_index,
                config.flip_consistency,
                stride=heatmap_stride(image, heatmaps),
                refine=config.decode,
            )
        if config.hard_targets:
            heatmaps, kept = hard_targets(
                heatmaps,
                config.sigma,
                threshold=config.hard_threshold,
                refine=config.decode,
                unbiased=config.unbiased,
            )
            weights = weights * kept
        return heatmaps, weights

    def unsupervised_losses(self, image: Tensor) -> list[Tensor]:
        """PoseCons on unlabelled crops for every learner: pseudo-labels on one easy view,
        each network fitted on its own hard view.

        Args:
            image: ``(B, 3, H, W)`` base crops (labels, if any, are not used).

        Returns:
            A scalar loss per learner.
        """
        affine, easy = self.easy_view(image, stream="unlabeled_view")
        pseudo = [self.pseudo_labels(easy.image, i) for i in range(len(self.learners))]
        self.last_pseudo = PseudoLabels(affine, easy, *pseudo[0])
        return [
            self._hard_view_loss(learner, easy.image, targets, weights)
            for learner, (targets, weights) in zip(self.learners, pseudo, strict=True)
        ]

    def _hard_view_loss(
        self, learner: Learner, easy: Tensor, targets: Tensor, weights: Tensor
    ) -> Tensor:
        """The learner's hard view of ``easy`` (cutout at the peaks of ``targets``, extra
        affine), its student's output there fitted to ``targets`` warped alike."""
        hard_image = easy
        if self.config.joint_cutout:
            stride = heatmap_stride(easy, targets)
            peaks, _ = decode_heatmaps(targets, refine=self.config.decode)
            hard_image = learner.cutout(hard_image, peaks * stride).image
        hard = learner.hard_affine(hard_image, heatmaps=targets)
        frozen = self.config.hard_bn_stats == "frozen"
        with (
            self._autocast(),
            frozen_running_stats(unwrap(learner.student)) if frozen else nullcontext(),
        ):
            pred = learner.student(hard.image)
        return joint_mse(pred, cast(Tensor, hard.heatmaps), weights)

    def losses(
        self, labeled: dict[str, Tensor], unlabeled: dict[str, Tensor] | None
    ) -> dict[str, Tensor]:
        """The losses of one step (no host sync; call ``backward`` on ``["loss"]``).

        Args:
            labeled: a batch with ``image`` ``(B, 3, H, W)``, ``keypoints`` ``(B, K, 2)`` and
                ``visibility`` ``(B, K)`` on the device.
            unlabeled: a batch with ``image``, or ``None`` for ``supervised``.

        Returns:
            ``{"loss", "sup"}`` plus ``"unsup"`` for the semi-supervised methods, and
            ``"sup_b"``, ``"unsup_b"`` (network B's) for the dual methods; ``"loss"`` is the
            sum over the networks of ``sup + weight x unsup`` (their parameters are
            disjoint, so each network gets the gradient of its own loss).

        Raises:
            ValueError: if a semi-supervised method gets no unlabelled batch.
        """
        sup = self.supervised_losses(labeled["image"], labeled["keypoints"], labeled["visibility"])
        names = [learner.suffix for learner in self.learners]
        if not self.config.semi_supervised:
            return {"loss": sup[0], "sup": sup[0]}
        if unlabeled is None:
            raise ValueError(f"method {self.config.method!r} needs an unlabelled batch")
        weight = self.unsup_weight
        if weight == 0.0:  # burn-in (or a zero weight): no unlabelled pass
            unsup = [torch.zeros_like(s) for s in sup]
            parts = sup
        else:
            unsup = self.unsupervised_losses(unlabeled["image"])
            parts = [s + weight * u for s, u in zip(sup, unsup, strict=True)]
        losses = {"loss": sum(parts[1:], parts[0])}
        for name, s, u in zip(names, sup, unsup, strict=True):
            losses |= {"sup" + name: s, "unsup" + name: u}
        return losses

    @property
    def unsup_weight(self) -> float:
        """The unsupervised weight of the coming step: 0 in the burn-in, then the ramp."""
        config, step = self.config, self.teacher.step
        if step < config.burn_in:
            return 0.0
        if config.unsup_ramp > 0:
            return config.unsup_weight * min(1.0, (step - config.burn_in + 1) / config.unsup_ramp)
        return config.unsup_weight

    def update_teacher(self) -> float:
        """One EMA step of every teacher after ``optimizer.step()``; returns the momentum."""
        momenta = [learner.teacher.update(learner.student) for learner in self.learners]
        return momenta[0]

    def close(self) -> None:
        """Remove the mixing hooks from the students."""
        for learner in self.learners:
            learner.close()


@torch.no_grad()
def predict_heatmaps(
    model: nn.Module, image: Tensor, flip_index: Sequence[int] | None = None
) -> Tensor:
    """Heatmaps of ``model`` on ``image``, averaged with the flipped image's if asked.

    The flipped pass is mapped back exactly by :func:`~posemum_aug.transforms.apply_pose_flip`:
    its heatmaps are warped with the image flip ``x -> W - 1 - x`` expressed in heatmap
    pixels (a sub-pixel shift on top of the mirror at stride 4) and left and right joints
    are swapped.

    Args:
        model: the network, in eval mode.
        image: ``(B, 3, H, W)`` crops.
        flip_index: the skeleton's flip indices for the flip test; ``None`` for no flip test.

    Returns:
        ``(B, K, h, w)`` float32 heatmaps.
    """
    heatmaps: Tensor = model(image).float()
    if flip_index is None:
        return heatmaps
    mirrored = image.flip(-1)
    flags = torch.ones(image.shape[0], dtype=torch.bool, device=image.device)
    mirrored_heatmaps: Tensor = model(mirrored).float()
    back = apply_pose_flip(mirrored, flags, flip_index, heatmaps=mirrored_heatmaps)
    return 0.5 * (heatmaps + cast(Tensor, back.heatmaps))
