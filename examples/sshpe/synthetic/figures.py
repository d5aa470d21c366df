"""People: articulated 3-D figures from a pose prior, dressed and painted as layers.

* :func:`_sample_pose` draws joint angles from an activity template (standing, walking,
  running, reaching, waving, squatting, kicking, ...) plus noise, clipped to joint-angle
  limits; :class:`_Body` draws the body proportions and limb thickness.
* :class:`_Figure3D` poses the kinematic tree (pelvis, spine, neck, head, two arms, two
  legs) in camera axes under a view drawn from the :class:`~sshpe.synthetic.style.SceneStyle`:
  the COCO-17 joints, the limb capsules, the torso's outline points and the head.
* :class:`_Outfit` dresses it: skin, hair, clothes that are the same on both sides of the
  body, and an optional print on the front of the shirt.
* :func:`_figure_layers` projects the figure orthographically into the image as layers
  with their depths (parts nearer the camera slightly brighter); :func:`_scene_figure`
  gives its keypoints and which parts show each joint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .fabrics import _HAIR, _SKIN_TONES, _colour, _Fabric, _jitter
from .scene import Layer, SceneFigure
from .shapes import Array, Capsule, Ellipse, Polygon, _pt, convex_hull
from .style import SceneStyle
from .textures import (
    _FACE_DIRECTIONS,
    _FACE_FACING,
    _FACE_RADIUS,
    HeadTexture,
    PatternTexture,
    _unit,
)


def _rot_x(a: float) -> Array:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> Array:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a: float) -> Array:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# Joint-angle limits in degrees: (abduction, flexion, twist, bend) for the arms (bend =
# elbow) and legs (bend = knee); the torso's (lean forward, lean sideways, twist) and the
# head's (yaw, pitch, roll) relative to the torso.
_ARM_LIMITS = ((-25.0, 175.0), (-60.0, 170.0), (-90.0, 80.0), (0.0, 150.0))
_LEG_LIMITS = ((-20.0, 60.0), (-30.0, 125.0), (-20.0, 20.0), (0.0, 150.0))
_TORSO_LIMITS = ((-15.0, 45.0), (-20.0, 20.0), (-35.0, 35.0))
_HEAD_LIMITS = ((-70.0, 70.0), (-35.0, 35.0), (-20.0, 20.0))

# Activity templates: left arm, right arm, left leg, right leg (each abduction, flexion,
# twist, bend) and torso lean forward. Asymmetric ones are mirrored half of the time.
_TEMPLATES: tuple[tuple[tuple[float, ...], ...], ...] = (
    ((8, 0, 0, 10), (8, 0, 0, 10), (4, 0, 0, 3), (4, 0, 0, 3), (0,)),  # stand
    ((6, 25, 0, 25), (6, -25, 0, 25), (4, -20, 0, 10), (4, 25, 0, 25), (3,)),  # walk
    ((10, 55, 0, 95), (10, -45, 0, 95), (4, -25, 0, 50), (4, 60, 0, 80), (15,)),  # run
    ((160, 10, 0, 15), (160, 10, 0, 15), (5, 0, 0, 3), (5, 0, 0, 3), (0,)),  # arms up
    ((90, 0, 0, 5), (90, 0, 0, 5), (12, 0, 0, 3), (12, 0, 0, 3), (0,)),  # arms out
    ((10, 80, 0, 10), (10, 80, 0, 10), (4, 0, 0, 5), (4, 10, 0, 10), (10,)),  # reach
    ((95, 0, -90, 100), (8, 0, 0, 10), (4, 0, 0, 3), (4, 0, 0, 3), (0,)),  # wave
    ((10, 60, 0, 30), (10, 60, 0, 30), (12, 95, 0, 110), (12, 95, 0, 110), (20,)),  # squat
    ((60, 0, 0, 10), (60, 0, 0, 10), (4, 80, 0, 10), (4, 0, 0, 3), (5,)),  # kick
    ((40, -10, -60, 110), (40, -10, -60, 110), (10, 0, 0, 3), (10, 0, 0, 3), (0,)),  # hips
    ((30, 120, 0, 130), (5, -20, 0, 20), (8, 40, 0, 70), (4, -10, 0, 15), (10,)),  # throw
)


def _limb(angles: Sequence[float], knee: bool) -> tuple[Array, Array, Array]:
    """Unit directions of a left limb's two segments, in the frame of its parent.

    ``angles`` are degrees ``(abduction, flexion, twist, bend)``: ``flexion`` swings the
    limb forward (+z) from hanging down (-y), ``abduction`` out to the side (+x), ``twist``
    turns the bending plane about the upper segment, and ``bend`` folds the lower segment
    forwards (elbow) or backwards (knee). Also returns the forward normal of the lower
    segment (where a foot points).
    """
    a, f, t, e = (math.radians(v) for v in angles)
    d = np.array([math.sin(a) * math.cos(f), -math.cos(a) * math.cos(f), math.sin(f)])
    b0 = np.array([-math.sin(a) * math.sin(f), math.cos(a) * math.sin(f), math.cos(f)])
    b = math.cos(t) * b0 + math.sin(t) * np.cross(d, b0)
    if knee:
        b = -b
    lower = math.cos(e) * d + math.sin(e) * b
    forward = math.sin(e) * d - math.cos(e) * b
    return d, lower, forward


def _sample_pose(rng: np.random.Generator) -> dict[str, Any]:
    """Joint angles (degrees) from a random activity template, noise and limits."""
    template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
    limbs = [list(t) for t in template[:4]]
    if rng.random() < 0.5:  # mirror the activity
        limbs = [limbs[1], limbs[0], limbs[3], limbs[2]]
    pose: dict[str, Any] = {}
    for name, values, limits, noise in zip(
        ("left_arm", "right_arm", "left_leg", "right_leg"),
        limbs,
        (_ARM_LIMITS, _ARM_LIMITS, _LEG_LIMITS, _LEG_LIMITS),
        ((18, 18, 25, 20), (18, 18, 25, 20), (8, 12, 8, 12), (8, 12, 8, 12)),
        strict=True,
    ):
        free = rng.random() < 0.15  # sometimes anything within the limits
        pose[name] = tuple(
            rng.uniform(lo, hi) if free else float(np.clip(v + rng.normal(0, s), lo, hi))
            for v, (lo, hi), s in zip(values, limits, noise, strict=True)
        )
    lean = template[4][0]
    pose["torso"] = tuple(
        float(np.clip(v + rng.normal(0, s), lo, hi))
        for v, s, (lo, hi) in zip((lean, 0.0, 0.0), (8, 6, 12), _TORSO_LIMITS, strict=True)
    )
    pose["head"] = tuple(
        float(np.clip(rng.normal(0, s), lo, hi))
        for s, (lo, hi) in zip((30, 15, 8), _HEAD_LIMITS, strict=True)
    )
    return pose


@dataclass(frozen=True)
class _Body:
    """Body proportions, in units of standing height."""

    head: float
    neck: float
    torso: float
    shoulder: float
    hip: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    build: float  # limb thickness factor

    @classmethod
    def sample(cls, rng: np.random.Generator) -> _Body:
        u = rng.uniform
        return cls(
            head=0.066 * u(0.9, 1.15),
            neck=0.035 * u(0.8, 1.2),
            torso=0.29 * u(0.9, 1.1),
            shoulder=0.105 * u(0.85, 1.2),
            hip=0.07 * u(0.85, 1.25),
            upper_arm=0.17 * u(0.9, 1.1),
            forearm=0.15 * u(0.9, 1.1),
            thigh=0.235 * u(0.92, 1.08),
            shin=0.235 * u(0.92, 1.08),
            build=u(0.8, 1.35),
        )


# COCO-17 joints whose visibility the torso decides only on its near side.
_TORSO_JOINTS = frozenset({5, 6, 11, 12})
_OWN_PARTS: tuple[frozenset[str], ...] = (
    *(frozenset({"head"}),) * 5,
    frozenset({"left_upper_arm", "torso"}),
    frozenset({"right_upper_arm", "torso"}),
    frozenset({"left_upper_arm", "left_forearm"}),
    frozenset({"right_upper_arm", "right_forearm"}),
    frozenset({"left_forearm", "left_hand"}),
    frozenset({"right_forearm", "right_hand"}),
    frozenset({"left_thigh", "torso"}),
    frozenset({"right_thigh", "torso"}),
    frozenset({"left_thigh", "left_shin"}),
    frozenset({"right_thigh", "right_shin"}),
    frozenset({"left_shin", "left_foot"}),
    frozenset({"right_shin", "right_foot"}),
)


@dataclass(frozen=True)
class _Figure3D:
    """A posed figure in camera axes (x right, y up, z towards the viewer), height units."""

    joints: Array  # (17, 3) COCO-17
    facing: Array  # (5,) face points' component towards the camera
    parts: dict[str, tuple[Array, Array, float, float]]  # limb capsules: p0, p1, r0, r1
    torso: Array  # (M, 3) points whose hull is the torso
    torso_front: tuple[Array, Array]  # chest print centre and normal
    head_centre: Array
    head_radius: float
    head_rotation: Array  # head frame -> camera

    @classmethod
    def sample(cls, rng: np.random.Generator, style: SceneStyle) -> _Figure3D:
        body, pose = _Body.sample(rng), _sample_pose(rng)
        lean, side, twist = (math.radians(v) for v in pose["torso"])
        frontal = rng.random() < style.facing_p
        yaw = rng.normal(0, style.facing_yaw_std) if frontal else rng.uniform(0, 2 * math.pi)
        view = _rot_x(math.radians(float(np.clip(rng.normal(0, 10), -25, 25)))) @ _rot_y(yaw)
        pelvis_rot = view @ _rot_y(0.3 * twist)
        upper = view @ _rot_y(twist) @ _rot_x(lean) @ _rot_z(side)
        neck_base = upper @ np.array([0.0, body.torso, 0.0])
        h_yaw, h_pitch, h_roll = (math.radians(v) for v in pose["head"])
        head_rot = upper @ _rot_y(h_yaw) @ _rot_x(h_pitch) @ _rot_z(h_roll)
        head_centre = (
            neck_base
            + upper @ np.array([0, body.neck, 0])
            + head_rot @ np.array([0, body.head * 0.9, 0])
        )

        joints = np.zeros((17, 3))
        facing = np.zeros(5)
        for k, direction in enumerate(_FACE_DIRECTIONS):
            d = head_rot @ _unit(direction)
            joints[k] = head_centre + _FACE_RADIUS * body.head * d
            facing[k] = d[2]

        b = body.build
        parts: dict[str, tuple[Array, Array, float, float]] = {}
        for side_sign, side_name in ((1.0, "left"), (-1.0, "right")):
            m = np.array([side_sign, 1.0, 1.0])
            j = 0 if side_name == "left" else 1
            up_dir, fore_dir, _ = _limb(pose[f"{side_name}_arm"], knee=False)
            shoulder = neck_base + upper @ (m * np.array([body.shoulder, -0.025, 0.0]))
            elbow = shoulder + upper @ (m * up_dir) * body.upper_arm
            wrist = elbow + upper @ (m * fore_dir) * body.forearm
            thigh_dir, shin_dir, foot_dir = _limb(pose[f"{side_name}_leg"], knee=True)
            hip = pelvis_rot @ (m * np.array([body.hip, 0.0, 0.0]))
            knee = hip + pelvis_rot @ (m * thigh_dir) * body.thigh
            ankle = knee + pelvis_rot @ (m * shin_dir) * body.shin
            toe = ankle + pelvis_rot @ (m * (0.9 * foot_dir + 0.25 * shin_dir)) * 0.075
            hand = wrist + upper @ (m * fore_dir) * 0.035
            joints[[5 + j, 7 + j, 9 + j, 11 + j, 13 + j, 15 + j]] = (
                shoulder,
                elbow,
                wrist,
                hip,
                knee,
                ankle,
            )
            parts[f"{side_name}_upper_arm"] = (shoulder, elbow, 0.034 * b, 0.028 * b)
            parts[f"{side_name}_forearm"] = (elbow, wrist, 0.027 * b, 0.021 * b)
            parts[f"{side_name}_hand"] = (wrist, hand, 0.022 * b, 0.026 * b)
            parts[f"{side_name}_thigh"] = (hip, knee, 0.055 * b, 0.043 * b)
            parts[f"{side_name}_shin"] = (knee, ankle, 0.041 * b, 0.029 * b)
            parts[f"{side_name}_foot"] = (ankle, toe, 0.026 * b, 0.022 * b)
        parts["neck"] = (neck_base, head_centre, 0.036 * b, 0.03 * b)

        ring = np.linspace(0, 2 * math.pi, 12, endpoint=False)
        circle = np.stack((np.cos(ring), np.zeros_like(ring), np.sin(ring)), axis=1)
        chest = neck_base + upper @ np.array([0.0, -0.035, 0.0])
        shoulders = chest + (circle * [body.shoulder + 0.02 * b, 0, 0.07 * b]) @ upper.T
        waist = (circle * [body.hip + 0.04 * b, 0, 0.065 * b]) @ pelvis_rot.T
        front = upper @ np.array([0.0, 0.0, 1.0])
        print_centre = neck_base + upper @ np.array([0.0, -0.1, 0.07 * b])
        return cls(
            joints,
            facing,
            parts,
            np.concatenate((shoulders, waist)),
            (print_centre, front),
            head_centre,
            body.head,
            head_rot,
        )


def _project(points: Array, scale: float, roll: float, offset: Array) -> Array:
    """Camera-axis points ``(N, 3)`` -> image ``(N, 2)``: drop z, flip y, roll, scale, shift."""
    c, s = math.cos(roll), math.sin(roll)
    x, y = points[:, 0], -points[:, 1]
    out: Array = np.stack((c * x - s * y, s * x + c * y), axis=1) * scale + offset
    return out


@dataclass(frozen=True)
class _Outfit:
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    top: _Fabric
    bottom: _Fabric
    shoes: _Fabric
    long_sleeves: bool
    trousers: bool
    chest_print: tuple[float, float, float] | None

    @classmethod
    def sample(cls, rng: np.random.Generator) -> _Outfit:
        skin = _jitter(rng, _SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))], 0.12)
        hair = _HAIR[int(rng.integers(len(_HAIR)))] if rng.random() < 0.8 else _colour(rng)
        return cls(
            skin,
            _jitter(rng, hair, 0.2),
            _Fabric.sample(rng),
            _Fabric.sample(rng, plain=0.6),
            _Fabric.sample(rng, plain=0.9),
            bool(rng.random() < 0.5),
            bool(rng.random() < 0.7),
            _colour(rng) if rng.random() < 0.5 else None,
        )

    def fabric(self, part: str) -> _Fabric | None:
        """The fabric on a limb part, ``None`` for bare skin."""
        kind = part.split("_", 1)[-1]
        if kind == "upper_arm" or (kind == "forearm" and self.long_sleeves):
            return self.top
        if kind == "thigh" or (kind == "shin" and self.trousers):
            return self.bottom
        if kind == "foot":
            return self.shoes
        return None


def _figure_layers(
    rng: np.random.Generator,
    figure: _Figure3D,
    outfit: _Outfit,
    owner: int,
    scale: float,
    roll: float,
    offset: Array,
) -> list[tuple[float, Layer]]:
    """The figure's layers with their depth (camera z, larger is nearer)."""
    centre_z = float(figure.joints[:, 2].mean())

    def brightness(z: float) -> float:  # nearer parts are slightly brighter
        return 1.0 + 0.6 * float(np.clip(z - centre_z, -0.25, 0.25))

    layers: list[tuple[float, Layer]] = []
    skin = _Fabric(outfit.skin, outfit.skin, "solid", 0.05, True, 0.15)
    for part, (p0, p1, r0, r1) in figure.parts.items():
        a, b = _project(np.stack((p0, p1)), scale, roll, offset)
        shape = Capsule(_pt(a), _pt(b), r0 * scale, r1 * scale)
        z = float(p0[2] + p1[2]) / 2
        fabric = outfit.fabric(part) or skin
        texture = fabric.texture(
            rng, shape.bounds(), scale, (_pt(a), _pt(b)), max(r0, r1) * scale, brightness(z)
        )
        # a part sits where its middle is, a hair in front of where it attaches
        layers.append((z + 1e-3, Layer(shape, texture, owner, part)))

    torso_z = float(figure.torso[:, 2].mean())
    hull = Polygon(convex_hull(_project(figure.torso, scale, roll, offset)))
    axis_pts = _project(
        np.stack((figure.torso[:12].mean(0), figure.torso[12:].mean(0))), scale, roll, offset
    )
    width = float(np.ptp(_project(figure.torso[:12], scale, roll, offset)[:, 0]))
    torso_tex = outfit.top.texture(
        rng,
        hull.bounds(),
        scale,
        (_pt(axis_pts[0]), _pt(axis_pts[1])),
        max(width / 2, 2.0),
        brightness(torso_z),
    )
    layers.append((torso_z, Layer(hull, torso_tex, owner, "torso")))
    centre, normal = figure.torso_front
    if outfit.chest_print is not None and normal[2] > 0.3:
        ((cx, cy),) = _project(centre[None], scale, roll, offset)
        size = 0.045 * scale
        squash = math.atan2(normal[1], normal[0]) if abs(normal[2]) < 0.99 else 0.0
        print_shape = Ellipse(
            (float(cx), float(cy)), (size * float(normal[2]), size), roll - squash
        )
        colour = outfit.chest_print
        layers.append(
            (torso_z + 2e-4, Layer(print_shape, PatternTexture(colour, colour), owner, "torso"))
        )

    ((hx, hy),) = _project(figure.head_centre[None], scale, roll, offset)
    head = HeadTexture(
        (float(hx), float(hy)),
        figure.head_radius * scale,
        figure.head_rotation,
        roll,
        outfit.skin,
        outfit.hair,
        (0.05, 0.05, 0.08),
        hair_front=rng.uniform(-0.3, 0.1),
        hair_top=rng.uniform(0.45, 0.75),
        brightness=brightness(float(figure.head_centre[2])),
    )
    head_shape = Ellipse((float(hx), float(hy)), (figure.head_radius * scale,) * 2)
    layers.append((float(figure.head_centre[2]) + 0.05, Layer(head_shape, head, owner, "head")))
    return layers


def _scene_figure(figure: _Figure3D, scale: float, roll: float, offset: Array) -> SceneFigure:
    """The placed figure's image keypoints and what makes each joint visible."""
    torso_depth = float(figure.torso[:, 2].mean())
    return SceneFigure(
        keypoints=_project(figure.joints, scale, roll, offset),
        depth=figure.joints[:, 2].copy(),
        torso_depth=torso_depth,
        own_parts=tuple(
            parts - {"torso"} if j in _TORSO_JOINTS and figure.joints[j, 2] < torso_depth else parts
            for j, parts in enumerate(_OWN_PARTS)
        ),
        facing_away=np.array([k < 5 and figure.facing[k] < _FACE_FACING[k] for k in range(17)]),
    )
