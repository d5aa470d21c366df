"""How hard the synthetic scenes are: :class:`SceneStyle` and its two presets.

A style sets how often the harder cases occur: people turned sideways or away, people
lying or upside down, people overlapping each other, background clutter and limb-like
distractors, occluders over joints, and the sensor noise. :data:`CLEAN` is the default;
:data:`CLUTTERED` gives generator version 2's scenes. :data:`STYLES` names both, for
``generate_synthetic_coco(style=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SceneStyle:
    """How hard the scenes are: views, roll, overlap, clutter, occluders, noise.

    Attributes:
        facing_p: share of people roughly facing the camera; the rest take any yaw
            (side and back views).
        facing_yaw_std: yaw std of the facing people, radians.
        upright_p: share of near-upright people (roll std 0.15 rad); the rest roll up to
            +-1.8 rad.
        overlap_p: chance that a person is placed over another one (otherwise anywhere).
        clutter_count: ``(low, high)`` background items, ``high`` exclusive.
        distractor_p: share of limb-like items among them.
        occluder_p: chance that a person gets an occluder over one of its joints.
        noise_sigma: ``(low, high)`` range of the image noise std, 8-bit levels.
    """

    facing_p: float
    facing_yaw_std: float
    upright_p: float
    overlap_p: float
    clutter_count: tuple[int, int]
    distractor_p: float
    occluder_p: float
    noise_sigma: tuple[float, float]


#: The default: every person faces the camera roughly and stands upright, alone, in
#: front of little clutter and no occluder. Chosen so that the benchmark's CPU budget
#: (a ResNet-18 at width 0.25 trained for minutes from scratch) gets far enough for
#: methods to differ; see examples/README.md for the calibration runs.
CLEAN = SceneStyle(
    facing_p=1.0,
    facing_yaw_std=0.5,
    upright_p=1.0,
    overlap_p=0.0,
    clutter_count=(0, 2),
    distractor_p=0.0,
    occluder_p=0.0,
    noise_sigma=(1.0, 2.0),
)
#: Generator version 2's scenes: one person in ten at any yaw, 5 % rolled, overlapping
#: people, limb-like distractors and occluders (hidden joints are common).
CLUTTERED = SceneStyle(
    facing_p=0.9,
    facing_yaw_std=0.5,
    upright_p=0.95,
    overlap_p=0.2,
    clutter_count=(2, 7),
    distractor_p=0.25,
    occluder_p=0.4,
    noise_sigma=(1.0, 4.0),
)
STYLES = {"clean": CLEAN, "cluttered": CLUTTERED}
