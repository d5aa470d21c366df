"""The public surface: what ``posemum_aug`` exports, each name documented and importable."""

from __future__ import annotations

import inspect

import torch

import posemum_aug

PUBLIC = [
    "COCO_17",
    "CROWDPOSE_14",
    "DEFAULT_SIGMA",
    "EMANTeacher",
    "JointCutout",
    "JointCutoutParams",
    "MeanTeacher",
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
    "heatmap_stride",
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


def test_all_is_the_documented_surface() -> None:
    assert posemum_aug.__all__ == PUBLIC
    assert sorted(PUBLIC) == PUBLIC


def test_every_public_callable_has_a_docstring_with_an_example() -> None:
    for name in PUBLIC:
        obj = getattr(posemum_aug, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            doc = inspect.getdoc(obj) or ""
            assert doc, name
            if inspect.isfunction(obj):
                assert ">>>" in doc, f"{name} has no runnable example"


def test_one_generator_rule_functions_per_call_modules_at_construction() -> None:
    samplers, modules = [], []
    for name in PUBLIC:
        obj = getattr(posemum_aug, name)
        if inspect.isfunction(obj) and "generator" in inspect.signature(obj).parameters:
            samplers.append(name)
        elif inspect.isclass(obj) and issubclass(obj, torch.nn.Module):
            random = "generator" in inspect.signature(obj.__init__).parameters
            assert "generator" not in inspect.signature(obj.forward).parameters, name
            modules.append((name, random))
    assert all(name.startswith("sample_") for name in samplers), samplers
    randomised = {name for name, random in modules if random}
    assert randomised == {"JointCutout", "PoseMUM", "RandomPoseAffine", "RandomPoseFlip"}
