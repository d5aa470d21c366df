"""A semi-supervised top-down pose estimator for mmpose: Pose-MUM + PoseCons with an EMAN teacher.

One training batch holds labelled and unlabelled crops (see
:class:`~posemum_mmpose.sampler.LabelledUnlabelledSampler`), each marked by the
``labelled`` meta key (:class:`~posemum_mmpose.transforms.SetLabelled`). The student, any
mmpose top-down model, is trained with its own head's loss on the labelled crops and with
SSHPE's consistency loss on the unlabelled ones: the teacher's heatmaps of the crop the
data pipeline made (the easy view) are the target of the student's heatmaps of a hard view
(Joint Cutout at the teacher's peaks, then a random scale and rotation that also warps the
targets), and the student's backbone mixes the tiles of the hard views across groups of
samples at its input and at feature stages and unmixes them before the head (Pose-MUM).
The teacher is an :class:`~posemum_aug.EMANTeacher`, updated after every optimizer step by
:class:`~posemum_mmpose.hooks.EMANTeacherHook`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, Literal, cast

import torch
from mmengine.dist import get_rank
from mmengine.model import BaseModel
from mmpose.registry import MODELS
from torch import Tensor

from posemum_aug import (
    EMANTeacher,
    JointCutout,
    PoseMUM,
    RandomPoseAffine,
    confidence_weights,
    decode_heatmaps,
    frozen_running_stats,
    heatmap_stride,
)

#: Mixing and unmixing points of the backbones Pose-MUM knows: the input (``""``) and the
#: stages before the last one mix; the last stage's output is unmixed before the head.
#: HRNet's stages take and return lists of branches, mixed branch by branch.
MIX_POINTS: dict[str, tuple[tuple[str, ...], str]] = {
    "ResNet": (("", "layer1", "layer2", "layer3"), "layer4"),
    "HRNet": (("", "layer1", "stage2", "stage3"), "stage4"),
}


def mix_points(backbone: torch.nn.Module) -> tuple[tuple[str, ...], str]:
    """The default ``(mix_at, unmix_at)`` of ``backbone``, looked up by its class or a base.

    Raises:
        ValueError: for a backbone of a family :data:`MIX_POINTS` does not list.
    """
    for cls in type(backbone).__mro__:
        if cls.__name__ in MIX_POINTS:
            return MIX_POINTS[cls.__name__]
    raise ValueError(
        f"no default mixing points for backbone {type(backbone).__name__}: pass mix_at and "
        f"unmix_at (known: {', '.join(MIX_POINTS)})"
    )


def joint_mse(pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """Mean over joints of ``weights`` times each joint's heatmap MSE; ``(B, K, h, w)`` maps."""
    per_joint = (pred.float() - target).pow(2).mean(dim=(-2, -1))
    return (per_joint * weights).mean()


@MODELS.register_module()
class SemiTopdownPoseEstimator(BaseModel):
    """A student top-down estimator, its EMAN teacher and Pose-MUM on the student's backbone.

    ``forward(inputs, data_samples, mode)`` follows mmpose: ``"loss"`` on a mixed
    labelled/unlabelled batch returns ``{"loss_kpt", "acc_pose"}`` of the student's head
    on the labelled crops and ``"loss_unsup"`` (the weighted consistency loss) for the
    unlabelled ones; ``"predict"`` and ``"tensor"`` run the model named by
    ``predict_with``, without mixing (eval mode never mixes), exactly as the plain mmpose
    estimator does.

    Args:
        student: config of any mmpose top-down estimator (``TopdownPoseEstimator`` with a
            heatmap head), without its own ``data_preprocessor``.
        momentum: weight kept on the teacher per update (EMAN: 0.999).
        unsup_weight: weight of the consistency loss.
        burn_in: teacher updates (optimizer steps) before the consistency loss starts.
        mix: :class:`~posemum_aug.PoseMUM` arguments (``group_size``, ``grid``, ``p``,
            ``p_feature``, ``feature_mode``); ``None`` trains without mixing (PoseCons).
        mix_at: mixing points, names of backbone submodules (``""``: the input); ``None``
            takes :data:`MIX_POINTS` for the backbone's family.
        unmix_at: the backbone submodule whose output is unmixed; ``None``: as ``mix_at``.
        mix_labelled: mix the labelled crops too (off in Pose-MUM).
        hard_affine: :class:`~posemum_aug.RandomPoseAffine` arguments of the hard view.
        cutout: :class:`~posemum_aug.JointCutout` arguments of the hard view; ``None``: no
            Joint Cutout.
        confidence: keep a joint's consistency loss only where the teacher's peak reaches
            this (:func:`~posemum_aug.confidence_weights`); ``None`` keeps every joint.
        hard_bn_stats: ``"frozen"`` keeps the hard views out of the student's BatchNorm
            running statistics, ``"update"`` lets them in.
        predict_with: the model of ``"predict"`` and ``"tensor"``: ``"teacher"`` or
            ``"student"``.
        seed: seed of the generator of every hard view and mixing draw (offset by the
            rank); its state is saved with the model, so a resumed run draws on.
        data_preprocessor: mmpose's ``PoseDataPreprocessor`` config.
        init_cfg: mmengine initialisation config.

    Raises:
        ValueError: for a ``predict_with`` or ``hard_bn_stats`` outside their choices, a
            negative ``burn_in`` or ``unsup_weight``, mixing points the backbone does not
            have, or (from the library) bad mixing, affine or cutout arguments.
    """

    def __init__(
        self,
        student: dict[str, Any],
        *,
        momentum: float = 0.999,
        unsup_weight: float = 1.0,
        burn_in: int = 0,
        mix: dict[str, Any] | None = None,
        mix_at: Sequence[str] | None = None,
        unmix_at: str | None = None,
        mix_labelled: bool = False,
        hard_affine: dict[str, Any] | None = None,
        cutout: dict[str, Any] | None = None,
        confidence: float | None = None,
        hard_bn_stats: Literal["frozen", "update"] = "frozen",
        predict_with: Literal["teacher", "student"] = "teacher",
        seed: int = 0,
        data_preprocessor: dict[str, Any] | None = None,
        init_cfg: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if predict_with not in ("teacher", "student"):
            raise ValueError(f"predict_with must be 'teacher' or 'student', got {predict_with!r}")
        if hard_bn_stats not in ("frozen", "update"):
            raise ValueError(f"hard_bn_stats must be 'frozen' or 'update', got {hard_bn_stats!r}")
        if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
            raise ValueError(f"burn_in must be an integer >= 0, got {burn_in!r}")
        if not unsup_weight >= 0.0:
            raise ValueError(f"unsup_weight must be >= 0, got {unsup_weight!r}")
        self.student = MODELS.build(student)
        self.teacher = EMANTeacher(self.student, momentum=momentum)
        self.unsup_weight = float(unsup_weight)
        self.burn_in = burn_in
        self.mix_labelled = mix_labelled
        self.confidence = confidence
        self.hard_bn_stats = hard_bn_stats
        self.predict_with = predict_with
        self.generator = torch.Generator().manual_seed(seed + get_rank())
        self.hard_affine = RandomPoseAffine(**(hard_affine or {}), generator=self.generator)
        self.cutout = None if cutout is None else JointCutout(**cutout, generator=self.generator)
        self.mum: PoseMUM | None = None
        if mix is not None:
            if mix_at is None or unmix_at is None:
                default_mix_at, default_unmix_at = mix_points(self.student.backbone)
                mix_at = default_mix_at if mix_at is None else mix_at
                unmix_at = default_unmix_at if unmix_at is None else unmix_at
            self.mum = PoseMUM(**mix, generator=self.generator)
            self.mum.attach(self.student.backbone, mix_at=list(mix_at), unmix_at=unmix_at)

    def init_weights(self) -> None:
        """Initialise the student (its ``init_cfg``: e.g. pretrained weights) and copy it
        into the teacher, so that both start from the same weights at step 0."""
        self.student.init_weights()
        self.teacher.module.load_state_dict(self.student.state_dict())
        self.teacher.step = 0

    def update_teacher(self) -> float:
        """One EMA step of the teacher towards the student; returns the momentum used."""
        return self.teacher.update(self.student)

    def forward(
        self, inputs: Tensor, data_samples: list[Any] | None = None, mode: str = "tensor"
    ) -> Any:
        """mmpose's entry point: ``mode`` is ``"loss"``, ``"predict"`` or ``"tensor"``.

        Args:
            inputs: ``(B, 3, H, W)`` normalised crops.
            data_samples: the batch's ``PoseDataSample``s.
            mode: what to return (see the class docstring).

        Raises:
            ValueError: for another ``mode``, or (``"loss"``) a sample without the
                ``labelled`` meta key.
        """
        if mode == "loss":
            return self.loss(inputs, data_samples or [])
        if mode not in ("predict", "tensor"):
            raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
        model = self.teacher.module if self.predict_with == "teacher" else self.student
        with torch.no_grad() if model is self.teacher.module else nullcontext():
            return model(inputs, data_samples, mode=mode)

    def loss(self, inputs: Tensor, data_samples: list[Any]) -> dict[str, Tensor]:
        """The losses of one mixed batch (see the class docstring).

        Args:
            inputs: ``(B, 3, H, W)`` normalised crops.
            data_samples: ``B`` ``PoseDataSample``s with the ``labelled`` meta key; the
                labelled ones carry the head's training targets.

        Returns:
            The student head's losses on the labelled crops (none without any) and
            ``loss_unsup`` (zero during the burn-in or without unlabelled crops).
        """
        flags = []
        for index, sample in enumerate(data_samples):
            flag = sample.metainfo.get("labelled")
            if not isinstance(flag, bool):
                raise ValueError(
                    f"sample {index} of the batch has labelled={flag!r}: put SetLabelled in "
                    "each dataset's pipeline and 'labelled' in PackPoseInputs' meta_keys"
                )
            flags.append(flag)
        labelled = torch.tensor(flags, device=inputs.device)
        losses: dict[str, Tensor] = {}
        if any(flags):
            samples = [s for s, flag in zip(data_samples, flags, strict=True) if flag]
            pause = self.mum.paused() if self.mum is not None and not self.mix_labelled else None
            with pause or nullcontext():
                losses.update(self.student(inputs[labelled], samples, mode="loss"))
        unlabelled = inputs[~labelled]
        if len(unlabelled) == 0 or self.teacher.step < self.burn_in:
            losses["loss_unsup"] = inputs.new_zeros(())
        else:
            losses["loss_unsup"] = self.unsup_weight * self.consistency_loss(unlabelled)
        return losses

    def consistency_loss(self, easy: Tensor) -> Tensor:
        """SSHPE's PoseCons on unlabelled crops: teacher on ``easy``, student on the hard view.

        Args:
            easy: ``(B, 3, H, W)`` normalised crops as the data pipeline made them.

        Returns:
            The scalar joint-weighted heatmap MSE.
        """
        targets = self.teacher(easy, None, mode="tensor").float()
        weights = targets.new_ones(targets.shape[:2])
        if self.confidence is not None:
            weights = confidence_weights(targets, self.confidence)
        hard = easy
        if self.cutout is not None:
            peaks, _ = decode_heatmaps(targets)
            hard = self.cutout(hard, peaks * heatmap_stride(easy, targets)).image
        view = self.hard_affine(hard, heatmaps=targets)
        frozen = self.hard_bn_stats == "frozen"
        with frozen_running_stats(self.student) if frozen else nullcontext():
            pred = self.student(view.image, None, mode="tensor")
        return joint_mse(pred, cast(Tensor, view.heatmaps), weights)

    def get_extra_state(self) -> dict[str, Tensor]:
        """The generator's state, saved with the model so a resumed run draws on."""
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        """Restore the generator state saved by :meth:`get_extra_state`."""
        self.generator.set_state(state["generator"])
