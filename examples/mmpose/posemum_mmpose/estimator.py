"""A semi-supervised top-down pose estimator for mmpose: Pose-MUM + PoseCons with an EMAN teacher.

The model follows mmdet 3.x's ``SemiBaseDetector``: a student and a teacher network in one
model, ``semi_train_cfg`` / ``semi_test_cfg``, ``sup_`` / ``unsup_`` loss names, plain
checkpoints loaded into both networks. Its other arguments are those of the plain estimator
(``backbone``, ``neck``, ``head``, ``test_cfg``, ``init_cfg``, ...), so a semi-supervised
config inherits a plain mmpose config and changes the model's ``type``.

One training batch holds labelled and unlabelled crops (see
:class:`~posemum_mmpose.sampler.LabelledUnlabelledSampler`), each marked by the
``labelled`` meta key (:class:`~posemum_mmpose.transforms.SetLabelled`). The student is
trained with its own head's loss on the labelled crops and with SSHPE's consistency loss
on the unlabelled ones: the teacher's heatmaps of the crop the data pipeline made (the easy
view) are the target of the student's heatmaps of a hard view (Joint Cutout at the
teacher's peaks, then a random scale and rotation that also warps the targets), and the
student's backbone mixes the tiles of the hard views across groups of samples at its input
and at feature stages and unmixes them before the head (Pose-MUM). The teacher is an
:class:`~posemum_aug.EMANTeacher`, moved after every optimizer step by
:class:`~posemum_mmpose.teacher_hook.EMANTeacherHook`.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, cast

import torch
from mmengine.dist import get_rank
from mmengine.model import BaseModel
from mmpose.models.heads import HeatmapHead
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

#: ``semi_train_cfg`` keys and their defaults (see :class:`SemiTopdownPoseEstimator`).
SEMI_TRAIN_DEFAULTS: dict[str, Any] = {
    "sup_weight": 1.0,
    "unsup_weight": 1.0,
    "burn_in": 0,
    "mix": None,
    "mix_at": None,
    "unmix_at": None,
    "mix_labelled": False,
    "hard_affine": {},
    "cutout": None,
    "confidence": None,
    "hard_bn_stats": "frozen",
    "seed": 0,
}
#: ``semi_test_cfg`` keys and their defaults.
SEMI_TEST_DEFAULTS: dict[str, Any] = {"predict_on": "teacher"}

#: Keys that mmdet users or earlier versions of this plugin put elsewhere, and where they go.
_MOVED = {
    "momentum": "the teacher's momentum is EMANTeacherHook's (custom_hooks), as in mmdet's "
    "MeanTeacherHook, and is the student's weight there (EMAN's 0.999 is momentum=0.001)",
    "predict_on": "predict_on belongs to semi_test_cfg",
    "freeze_teacher": "the teacher is always frozen and in eval mode (EMAN)",
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
        f"unmix_at in semi_train_cfg (known: {', '.join(MIX_POINTS)})"
    )


def joint_mse(pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """Mean over joints of ``weights`` times each joint's heatmap MSE; ``(B, K, h, w)`` maps."""
    per_joint = (pred.float() - target).pow(2).mean(dim=(-2, -1))
    return (per_joint * weights).mean()


def with_defaults(
    name: str, given: dict[str, Any] | None, defaults: dict[str, Any]
) -> dict[str, Any]:
    """``defaults`` updated by ``given``; unknown keys raise, naming where moved ones went.

    Raises:
        ValueError: for a key that ``defaults`` lacks.
    """
    given = dict(given or {})
    for key in given:
        if key not in defaults:
            hint = _MOVED.get(key, f"known keys: {', '.join(defaults)}")
            raise ValueError(f"unknown {name} key {key!r}: {hint}")
    return {**defaults, **given}


class TeacherNetwork(EMANTeacher):
    """An :class:`~posemum_aug.EMANTeacher` whose ``state_dict`` holds tensors only.

    mmengine broadcasts every ``state_dict`` entry from rank 0 after initialising the
    weights; the library's teacher keeps its step and base momentum as a dict, so here
    they are one float64 tensor ``[step, momentum]`` (exact up to 2**53 steps).
    """

    # the library's teacher returns a dict; torch allows any object here
    def get_extra_state(self) -> Tensor:  # type: ignore[override]
        """``[step, base_momentum]`` as float64."""
        state = super().get_extra_state()
        return torch.tensor([state["step"], state["momentum"]], dtype=torch.float64)

    def set_extra_state(self, state: Any) -> None:
        """Restore the tensor of :meth:`get_extra_state`.

        Raises:
            ValueError: for anything but a 2-element tensor, or a step or momentum out
                of range.
        """
        if not isinstance(state, Tensor) or state.numel() != 2:
            raise ValueError(
                "the teacher's extra state must be a tensor [step, momentum], got "
                f"{type(state).__name__}: a checkpoint of another posemum_mmpose version?"
            )
        step, momentum = state.tolist()
        if step != int(step):
            raise ValueError(f"the teacher's step must be an integer, got {step!r}")
        super().set_extra_state({"step": int(step), "momentum": momentum})


@MODELS.register_module()
class SemiTopdownPoseEstimator(BaseModel):
    """A student top-down estimator, its EMAN teacher and Pose-MUM on the student's backbone.

    ``forward(inputs, data_samples, mode)`` follows mmpose: ``"loss"`` on a mixed
    labelled/unlabelled batch returns the student head's losses on the labelled crops with
    a ``sup_`` prefix (``sup_loss_kpt``, ``sup_acc_pose``) and the consistency loss of the
    unlabelled ones, ``unsup_loss_kpt``; ``"predict"`` and ``"tensor"`` run the network
    named by ``semi_test_cfg["predict_on"]``, without mixing, exactly as the plain
    estimator does. The state dict holds ``student.*`` and ``teacher.module.*`` (and the
    teacher's step); a checkpoint of the plain estimator loads into both networks.

    Args:
        semi_train_cfg: the training step's settings (defaults in
            :data:`SEMI_TRAIN_DEFAULTS`): ``sup_weight`` and ``unsup_weight`` (loss
            weights); ``burn_in`` (teacher updates before the consistency loss starts);
            ``mix`` (:class:`~posemum_aug.PoseMUM` arguments ``group_size``, ``grid``,
            ``p``, ``p_feature``, ``feature_mode``; ``None`` trains without mixing, i.e.
            PoseCons); ``mix_at`` / ``unmix_at`` (backbone submodules, ``""`` being the
            input; ``None`` takes :data:`MIX_POINTS`); ``mix_labelled`` (mix the labelled
            crops too; off in Pose-MUM); ``hard_affine``
            (:class:`~posemum_aug.RandomPoseAffine` arguments of the hard view); ``cutout``
            (:class:`~posemum_aug.JointCutout` arguments; ``None``: no Joint Cutout);
            ``confidence`` (keep a joint's consistency loss only where the teacher's peak
            reaches it; ``None`` keeps all); ``hard_bn_stats`` (``"frozen"`` keeps the hard
            views out of the student's BatchNorm statistics, ``"update"`` lets them in);
            ``seed`` (of the hard views' and the mixing's generator, plus the rank).
        semi_test_cfg: ``predict_on``: ``"teacher"`` (default) or ``"student"``.
        data_preprocessor: mmpose's ``PoseDataPreprocessor`` config.
        estimator_type: the registered type of the student and teacher networks.
        **estimator: the plain estimator's arguments (``backbone``, ``neck``, ``head``,
            ``train_cfg``, ``test_cfg``, ``init_cfg``, ``metainfo``, ...). The head must be
            a ``HeatmapHead`` (or a subclass): the consistency loss compares heatmaps.

    Raises:
        ValueError: for unknown ``semi_train_cfg`` / ``semi_test_cfg`` keys (moved ones
            say where they went), a head without ``(B, K, h, w)`` heatmaps (SimCC,
            regression), a ``predict_on`` or ``hard_bn_stats`` outside their choices, a
            negative ``burn_in`` or weight, mixing points the backbone does not have, or
            (from the library) bad mixing, affine or cutout arguments.
    """

    def __init__(
        self,
        *,
        semi_train_cfg: dict[str, Any] | None = None,
        semi_test_cfg: dict[str, Any] | None = None,
        data_preprocessor: dict[str, Any] | None = None,
        estimator_type: str = "TopdownPoseEstimator",
        **estimator: Any,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        train = with_defaults("semi_train_cfg", semi_train_cfg, SEMI_TRAIN_DEFAULTS)
        self.semi_test_cfg = with_defaults("semi_test_cfg", semi_test_cfg, SEMI_TEST_DEFAULTS)
        if self.semi_test_cfg["predict_on"] not in ("teacher", "student"):
            raise ValueError(
                "semi_test_cfg.predict_on must be 'teacher' or 'student', got "
                f"{self.semi_test_cfg['predict_on']!r}"
            )
        if train["hard_bn_stats"] not in ("frozen", "update"):
            raise ValueError(
                "semi_train_cfg.hard_bn_stats must be 'frozen' or 'update', got "
                f"{train['hard_bn_stats']!r}"
            )
        burn_in = train["burn_in"]
        if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
            raise ValueError(f"semi_train_cfg.burn_in must be an integer >= 0, got {burn_in!r}")
        for key in ("sup_weight", "unsup_weight"):
            if not train[key] >= 0.0:
                raise ValueError(f"semi_train_cfg.{key} must be >= 0, got {train[key]!r}")
        self.student = MODELS.build(dict(type=estimator_type, **estimator))
        head = getattr(self.student, "head", None)
        if not isinstance(head, HeatmapHead):
            raise ValueError(
                "SemiTopdownPoseEstimator needs a HeatmapHead (or a subclass) whose forward "
                f"gives (B, K, h, w) heatmaps, got {type(head).__name__}: the consistency "
                "loss compares the teacher's and the student's heatmaps, which SimCC and "
                "regression heads do not have"
            )
        self.teacher = TeacherNetwork(self.student)
        # one test_cfg for both networks and this model (MMPoseInferencer edits it in place)
        self.test_cfg: dict[str, Any] = self.student.test_cfg
        self.teacher.module.test_cfg = self.test_cfg
        self.dataset_meta: dict[str, Any] | None = None
        self.semi_train_cfg = train
        self.generator = torch.Generator().manual_seed(int(train["seed"]) + get_rank())
        self.hard_affine = RandomPoseAffine(**train["hard_affine"], generator=self.generator)
        cutout = train["cutout"]
        self.cutout = None if cutout is None else JointCutout(**cutout, generator=self.generator)
        self.mum: PoseMUM | None = None
        if train["mix"] is not None:
            mix_at, unmix_at = train["mix_at"], train["unmix_at"]
            if mix_at is None or unmix_at is None:
                default_mix_at, default_unmix_at = mix_points(self.student.backbone)
                mix_at = default_mix_at if mix_at is None else mix_at
                unmix_at = default_unmix_at if unmix_at is None else unmix_at
            self.mum = PoseMUM(**train["mix"], generator=self.generator)
            self.mum.attach(self.student.backbone, mix_at=list(mix_at), unmix_at=unmix_at)

    def init_weights(self) -> None:
        """Initialise the student (its ``init_cfg``: e.g. ImageNet weights) and copy it
        into the teacher, so that both start from the same weights at step 0."""
        self.student.init_weights()
        self.teacher.module.load_state_dict(self.student.state_dict())
        self.teacher.step = 0

    def update_teacher(self) -> float:
        """One EMA step of the teacher towards the student; returns the teacher's weight used.

        The momentum and its schedule are the teacher's (``self.teacher.base_momentum``,
        ``self.teacher.schedule``), which :class:`EMANTeacherHook` sets from its config.
        """
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
        if self.semi_test_cfg["predict_on"] == "teacher":
            return self.teacher(inputs, data_samples, mode=mode)
        return self.student(inputs, data_samples, mode=mode)

    def loss(self, inputs: Tensor, data_samples: list[Any]) -> dict[str, Tensor]:
        """The losses of one mixed batch (see the class docstring).

        Args:
            inputs: ``(B, 3, H, W)`` normalised crops.
            data_samples: ``B`` ``PoseDataSample``s with the ``labelled`` meta key; the
                labelled ones carry the head's training targets.

        Returns:
            The student head's losses and metrics on the labelled crops, prefixed ``sup_``
            (none without labelled crops; losses times ``sup_weight``), and
            ``unsup_loss_kpt`` (zero, and not computed, during the burn-in, with
            ``unsup_weight=0`` or without unlabelled crops).
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
        train = self.semi_train_cfg
        losses: dict[str, Tensor] = {}
        if any(flags):
            samples = [s for s, flag in zip(data_samples, flags, strict=True) if flag]
            pause = (
                self.mum.paused() if self.mum is not None and not train["mix_labelled"] else None
            )
            with pause or nullcontext():
                sup = self.student(inputs[labelled], samples, mode="loss")
            for key, value in sup.items():
                losses[f"sup_{key}"] = value * train["sup_weight"] if "loss" in key else value
        unlabelled = inputs[~labelled]
        skip = train["unsup_weight"] == 0 or self.teacher.step < train["burn_in"]
        if len(unlabelled) == 0 or skip:
            losses["unsup_loss_kpt"] = inputs.new_zeros(())
        else:
            losses["unsup_loss_kpt"] = train["unsup_weight"] * self.consistency_loss(unlabelled)
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
        if self.semi_train_cfg["confidence"] is not None:
            weights = confidence_weights(targets, self.semi_train_cfg["confidence"])
        hard = easy
        if self.cutout is not None:
            peaks, _ = decode_heatmaps(targets)
            hard = self.cutout(hard, peaks * heatmap_stride(easy, targets)).image
        view = self.hard_affine(hard, heatmaps=targets)
        frozen = self.semi_train_cfg["hard_bn_stats"] == "frozen"
        with frozen_running_stats(self.student) if frozen else nullcontext():
            pred = self.student(view.image, None, mode="tensor")
        return joint_mse(pred, cast(Tensor, view.heatmaps), weights)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Load a plain estimator's state into both networks, as mmdet's semi detectors do.

        A state without any ``student.`` or ``teacher.`` key is a plain one: each of its
        entries goes to the student and to the teacher, whose step restarts at 0. Torch's
        and mmengine's loaders call this before they descend into the children.
        """
        own = [k for k in state_dict if k.startswith(prefix)]
        networks = (f"{prefix}student.", f"{prefix}teacher.")
        if own and not any(k.startswith(networks) for k in own):
            for key in own:
                value = state_dict.pop(key)
                name = key[len(prefix) :]
                state_dict[f"{prefix}student.{name}"] = value
                state_dict[f"{prefix}teacher.module.{name}"] = value
            fresh = self.teacher.get_extra_state()
            state_dict[f"{prefix}teacher._extra_state"] = fresh.new_tensor([0, fresh[1]])
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
