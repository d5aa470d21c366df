"""posemum-aug: exact Pose-MUM tile mixing, an EMAN teacher and keypoint-aware tools.

See ``docs/`` for the conventions (shapes, coordinates, random generators).
"""

from __future__ import annotations

from posemum_aug.batchnorm import frozen_running_stats
from posemum_aug.filters import confidence_weights, flip_consistency_weights, hard_targets
from posemum_aug.heatmap import decode_heatmaps, flip_heatmaps, render_heatmaps, warp_heatmaps
from posemum_aug.keypoints import (
    COCO_17,
    CROWDPOSE_14,
    DEFAULT_SIGMA,
    Skeleton,
    affine_keypoints,
    as_flip_index,
    flip_keypoints,
    heatmap_matrix,
    infer_flip_index,
    invert_affine,
    visible_in_frame,
)
from posemum_aug.mix import (
    MixHandle,
    PoseMUM,
    TilePlan,
    attach,
    mix_keypoints,
    mix_tiles,
    sample_tile_plan,
    tile_bounds,
    unmix_tiles,
)
from posemum_aug.teacher import (
    EMANTeacher,
    MomentumSchedule,
    constant_momentum,
    cosine_momentum,
    ema_update_,
    linear_warmup_momentum,
)
from posemum_aug.transforms import (
    JointCutout,
    JointCutoutParams,
    PoseTransformResult,
    RandomPoseAffine,
    RandomPoseFlip,
    apply_joint_cutout,
    apply_pose_affine,
    apply_pose_flip,
    compose_affine,
    flip_matrix,
    joint_cutout_mask,
    pose_affine_matrix,
    sample_joint_cutout,
    sample_pose_affine,
    sample_pose_flip,
    warp_images,
)

__version__ = "0.1.0"

__all__ = [
    "COCO_17",
    "CROWDPOSE_14",
    "DEFAULT_SIGMA",
    "EMANTeacher",
    "JointCutout",
    "JointCutoutParams",
    "MixHandle",
    "MomentumSchedule",
    "PoseMUM",
    "PoseTransformResult",
    "RandomPoseAffine",
    "RandomPoseFlip",
    "Skeleton",
    "TilePlan",
    "__version__",
    "affine_keypoints",
    "apply_joint_cutout",
    "apply_pose_affine",
    "apply_pose_flip",
    "as_flip_index",
    "attach",
    "compose_affine",
    "confidence_weights",
    "constant_momentum",
    "cosine_momentum",
    "decode_heatmaps",
    "ema_update_",
    "flip_consistency_weights",
    "flip_heatmaps",
    "flip_keypoints",
    "flip_matrix",
    "frozen_running_stats",
    "hard_targets",
    "heatmap_matrix",
    "infer_flip_index",
    "invert_affine",
    "joint_cutout_mask",
    "linear_warmup_momentum",
    "mix_keypoints",
    "mix_tiles",
    "pose_affine_matrix",
    "render_heatmaps",
    "sample_joint_cutout",
    "sample_pose_affine",
    "sample_pose_flip",
    "sample_tile_plan",
    "tile_bounds",
    "unmix_tiles",
    "visible_in_frame",
    "warp_heatmaps",
    "warp_images",
]
