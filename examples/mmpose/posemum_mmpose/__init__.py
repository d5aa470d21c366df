"""Pose-MUM semi-supervised top-down training for mmpose 1.x, built on posemum-aug.

Install it (``pip install examples/mmpose``) and add to a config
``custom_imports = dict(imports=["posemum_mmpose"], allow_failed_imports=False)``; importing
it registers, in mmpose's registries:

* ``SemiTopdownPoseEstimator`` (models): a student top-down estimator, its EMAN teacher
  and Pose-MUM mixing on the student's backbone (mmdet's ``SemiBaseDetector`` layout);
* ``EMANTeacherHook`` (hooks): the teacher's update after each optimizer step, with
  mmdet's momentum convention and MUM's or BYOL's momentum schedules;
* ``RankGeneratorHook`` (hooks): each rank's mixing generator saved and resumed;
* ``TeacherStudentValLoop`` (loops): validation of both networks;
* ``LabelledUnlabelledSampler`` (data samplers): batches of labelled then unlabelled crops;
* ``SetLabelled`` (transforms): marks a dataset's crops as labelled or not.

``posemum-mmpose-export`` (:mod:`posemum_mmpose.export`) writes a plain mmpose checkpoint
of the teacher or the student.
"""

from __future__ import annotations

from posemum_mmpose.estimator import MIX_POINTS, SemiTopdownPoseEstimator, mix_points
from posemum_mmpose.loops import TeacherStudentValLoop
from posemum_mmpose.rank_generator import RankGeneratorHook
from posemum_mmpose.sampler import LabelledUnlabelledSampler
from posemum_mmpose.teacher_hook import EMANTeacherHook
from posemum_mmpose.transforms import SetLabelled

__version__ = "0.2.0"

__all__ = [
    "MIX_POINTS",
    "EMANTeacherHook",
    "LabelledUnlabelledSampler",
    "RankGeneratorHook",
    "SemiTopdownPoseEstimator",
    "SetLabelled",
    "TeacherStudentValLoop",
    "__version__",
    "mix_points",
]
