"""Pose-MUM semi-supervised top-down training for mmpose 1.x, built on posemum-aug.

Importing this package registers, in mmpose's registries:

* ``SemiTopdownPoseEstimator`` (models): a student top-down estimator, its
  :class:`~posemum_aug.EMANTeacher` and Pose-MUM mixing on the student's backbone;
* ``EMANTeacherHook`` (hooks): the teacher's update after each optimizer step;
* ``LabelledUnlabelledSampler`` (data samplers): batches of labelled then unlabelled crops;
* ``SetLabelled`` (transforms): marks a dataset's crops as labelled or not.

Use it from a config with ``custom_imports = dict(imports=["posemum_mmpose"])`` and the
``examples/mmpose`` folder on ``sys.path``. On a pip-only CPU install (``mmcv-lite``, no
torchvision) call :func:`posemum_mmpose.lite.install` before mmpose builds a model, as
``train.py`` and the tests do.
"""

from __future__ import annotations

from posemum_mmpose.estimator import MIX_POINTS, SemiTopdownPoseEstimator, mix_points
from posemum_mmpose.hooks import EMANTeacherHook
from posemum_mmpose.sampler import LabelledUnlabelledSampler
from posemum_mmpose.transforms import SetLabelled

__all__ = [
    "MIX_POINTS",
    "EMANTeacherHook",
    "LabelledUnlabelledSampler",
    "SemiTopdownPoseEstimator",
    "SetLabelled",
    "mix_points",
]
