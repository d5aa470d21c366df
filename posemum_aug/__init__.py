"""posemum-aug: exact Pose-MUM tile mixing, an EMAN teacher and keypoint-aware tools.

See ``docs/`` for the conventions (shapes, coordinates, random generators).
"""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "MixHandle",
    "PoseMUM",
    "TilePlan",
    "__version__",
    "attach",
    "mix_keypoints",
    "mix_tiles",
    "sample_tile_plan",
    "tile_bounds",
    "unmix_tiles",
]
