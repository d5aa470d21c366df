"""A procedural synthetic person-keypoint dataset in the official COCO format.

The default job of ``examples/train.py`` needs data that is bundled (nothing to download),
fast to make on a CPU, and hard enough that labels are scarce: a model trained on a few
hundred people must stay well below one trained on all of them, so unlabelled images have
room to help. :func:`generate_synthetic_coco` writes such a set once, seeded, into a
cache folder::

    root/
      images/train_000000.jpg ...  images/val_000000.jpg ...
      person_keypoints_train.json  person_keypoints_val.json
      manifest.json                the generation parameters (written last)

How a scene is made (:func:`sample_scene`):

* **People** are articulated 3-D figures from a pose prior: a kinematic tree (pelvis,
  spine, neck, head, two arms, two legs) whose joint angles come from activity templates
  (standing, walking, running, reaching, waving, squatting, kicking, ...) plus noise,
  clipped to joint-angle limits; body proportions, limb thickness, view (people roughly
  face the camera; in the cluttered style one in ten takes any yaw, so turns sideways or
  shows its back; some camera pitch), in-plane rotation (cluttered: sometimes lying or
  upside down), scale and position vary. Figures are projected orthographically and
  painted far to near. How often the harder cases occur is a :class:`SceneStyle`:
  :data:`CLEAN` (the default) or :data:`CLUTTERED` (generator version 2's scenes).
* **Left and right need context**: clothes are symmetric (both arms and legs share
  colour and texture). The cues are global: the face (eyes, nose, mouth) shows only from
  the front, hair covers the back of the head, an optional chest print is on the front of
  the shirt, feet point forward, and parts nearer the camera are slightly brighter.
* **Texture and clutter**: limbs and clothes carry stripes, checks or blotches with
  cylinder shading; backgrounds are textured (blotches, stripes, checks, a floor);
  random shapes and (cluttered) limb-like distractors, jointed capsules dressed like the
  people in the image, fill the background.
* **Occlusion**: the figure's own body and, in the cluttered style, occluders in front
  of people and other people hide joints. COCO's visibility flags follow from a render
  of which layer owns each pixel: ``v=2`` when the joint's pixel shows one of the
  joint's own body parts (and a face point faces the camera), ``v=1`` when it is hidden,
  ``v=0`` (with ``x = y = 0``) when it falls outside the image.

Shapes are signed-distance functions rendered with numpy at one sample per pixel with
analytic anti-aliasing (coverage ``clip(0.5 - distance, 0, 1)``), so points are exact
to a fraction of a pixel with pixel centres on integers. Boxes and areas are amodal:
the tight box and pixel count of the person's whole silhouette inside the image,
occluded parts included.

Example:
    >>> import numpy as np
    >>> scene = sample_scene(np.random.default_rng(0), (96, 128), num_persons=2)
    >>> rendered = render_scene(scene)
    >>> rendered.image.shape, rendered.image.dtype, len(annotate_scene(scene, rendered))
    ((96, 128, 3), dtype('uint8'), 2)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from tqdm import tqdm

from posemum_aug.keypoints import COCO_17

__all__ = [
    "CLEAN",
    "CLUTTERED",
    "DEFAULT_IMAGE_SIZE",
    "STYLES",
    "Layer",
    "PersonAnnotation",
    "Rendered",
    "Scene",
    "SceneFigure",
    "SceneStyle",
    "SyntheticPaths",
    "annotate_scene",
    "coco_category",
    "generate_synthetic_coco",
    "render_scene",
    "sample_scene",
]

Array = NDArray[np.floating[Any]]

#: Bumped whenever the generator's output changes, so cached sets are rebuilt.
GENERATOR_VERSION = 3

#: Default image size ``(H, W)``.
DEFAULT_IMAGE_SIZE = (192, 256)

#: Probabilities of one, two and three people in an image.
_PERSONS_PER_IMAGE = (0.45, 0.35, 0.20)


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

_JPEG_QUALITY = 92
_MANIFEST = "manifest.json"


# --------------------------------------------------------------------------- shapes


class Shape(Protocol):
    """A region of the image plane given by a signed distance (negative inside).

    Shapes and textures are evaluated on a pixel grid given as a row of column
    coordinates ``x`` ``(1, w)`` and a column of row coordinates ``y`` ``(h, 1)``; results
    broadcast to ``(h, w)``.
    """

    def bounds(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` containing every point with distance < 1 pixel."""
        ...

    def sdf(self, x: Array, y: Array) -> Array:
        """Signed distance in pixels on the grid ``x`` ``(1, w)``, ``y`` ``(h, 1)``."""
        ...


@dataclass(frozen=True)
class Capsule:
    """A segment ``p0 -> p1`` thickened to radius ``r0`` at ``p0`` and ``r1`` at ``p1``."""

    p0: tuple[float, float]
    p1: tuple[float, float]
    r0: float
    r1: float

    def bounds(self) -> tuple[float, float, float, float]:
        """See :class:`Shape`."""
        r = max(self.r0, self.r1) + 1.0
        return (
            min(self.p0[0], self.p1[0]) - r,
            min(self.p0[1], self.p1[1]) - r,
            max(self.p0[0], self.p1[0]) + r,
            max(self.p0[1], self.p1[1]) + r,
        )

    def sdf(self, x: Array, y: Array) -> Array:
        """See :class:`Shape` (exact for equal radii, close for tapered capsules)."""
        ax, ay = self.p0
        dx, dy = self.p1[0] - ax, self.p1[1] - ay
        t = np.clip(((x - ax) * dx + (y - ay) * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
        dist: Array = np.hypot(x - ax - t * dx, y - ay - t * dy)
        return dist - (self.r0 + t * (self.r1 - self.r0))


@dataclass(frozen=True)
class Ellipse:
    """An ellipse with semi-axes ``axes`` rotated by ``angle`` radians."""

    centre: tuple[float, float]
    axes: tuple[float, float]
    angle: float = 0.0

    def bounds(self) -> tuple[float, float, float, float]:
        """See :class:`Shape`."""
        r = max(self.axes) + 1.0
        return (self.centre[0] - r, self.centre[1] - r, self.centre[0] + r, self.centre[1] + r)

    def sdf(self, x: Array, y: Array) -> Array:
        """See :class:`Shape` (first-order distance estimate; exact for circles)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        u = (x - self.centre[0]) * c + (y - self.centre[1]) * s
        v = -(x - self.centre[0]) * s + (y - self.centre[1]) * c
        a, b = self.axes
        k = np.hypot(u / a, v / b)
        grad = np.hypot(u / (a * a), v / (b * b))
        out: Array = np.where(k > 1e-9, (k - 1.0) * k / np.maximum(grad, 1e-12), -min(a, b))
        return out


@dataclass(frozen=True)
class Polygon:
    """A convex polygon (vertices in either winding order)."""

    vertices: tuple[tuple[float, float], ...]

    def bounds(self) -> tuple[float, float, float, float]:
        """See :class:`Shape`."""
        xs, ys = [float(v[0]) for v in self.vertices], [float(v[1]) for v in self.vertices]
        return (min(xs) - 1, min(ys) - 1, max(xs) + 1, max(ys) + 1)

    def sdf(self, x: Array, y: Array) -> Array:
        """See :class:`Shape` (exact inside and beside edges; sharp-cornered outside)."""
        vertices = [(float(a), float(b)) for a, b in self.vertices]
        cx = sum(a for a, _ in vertices) / len(vertices)
        cy = sum(b for _, b in vertices) / len(vertices)
        out: Array | None = None
        for (ax, ay), (bx, by) in zip(vertices, vertices[1:] + vertices[:1], strict=True):
            length = max(math.hypot(bx - ax, by - ay), 1e-12)
            nx, ny = (by - ay) / length, (ax - bx) / length
            if nx * (cx - ax) + ny * (cy - ay) > 0:  # make the normal point outwards
                nx, ny = -nx, -ny
            edge = x * nx + (y * ny - (ax * nx + ay * ny))
            out = edge if out is None else np.maximum(out, edge)
        assert out is not None
        return out


def convex_hull(points: Array) -> tuple[tuple[float, float], ...]:
    """Convex hull of ``(N, 2)`` points (Andrew's monotone chain), as polygon vertices."""
    pts = sorted({(float(x), float(y)) for x, y in points})
    if len(pts) < 3:
        return tuple(pts)

    def half(seq: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        chain: list[tuple[float, float]] = []
        for p in seq:
            while len(chain) >= 2:
                (ox, oy), (ax, ay) = chain[-2], chain[-1]
                if (ax - ox) * (p[1] - oy) - (ay - oy) * (p[0] - ox) > 0:
                    break
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(pts), half(pts[::-1])
    return tuple(lower[:-1] + upper[:-1])


# ------------------------------------------------------------------------- textures


class Texture(Protocol):
    """Colour of a layer at image points, RGB floats in ``[0, 1]``."""

    def render(self, x: Array, y: Array) -> Array:
        """``(h, w, 3)`` colours on the grid ``x`` ``(1, w)``, ``y`` ``(h, 1)``."""
        ...


@dataclass(frozen=True)
class ValueNoise:
    """Smooth value noise: a random grid with spacing ``cell`` pixels, smoothstep-blended."""

    origin: tuple[float, float]
    cell: float
    grid: Array

    @classmethod
    def covering(
        cls, rng: np.random.Generator, bounds: tuple[float, float, float, float], cell: float
    ) -> ValueNoise:
        """Noise in ``[0, 1]`` defined over ``bounds`` ``(x0, y0, x1, y1)``."""
        x0, y0, x1, y1 = (float(v) for v in bounds)
        shape = (int((y1 - y0) / cell) + 3, int((x1 - x0) / cell) + 3)
        return cls((x0 - cell, y0 - cell), float(cell), rng.random(shape, dtype=np.float32))

    def __call__(self, x: Array, y: Array) -> Array:
        """Noise on the pixel grid with columns ``x`` ``(1, w)`` and rows ``y`` ``(h, 1)``.

        The smoothstep blend is separable: grid rows are blended first, then columns
        (gathers only: a BLAS product would spin up threads for tiny matrices).
        """
        iy, fy = _blend(y.ravel(), self.origin[1], self.cell, self.grid.shape[0])
        ix, fx = _blend(x.ravel(), self.origin[0], self.cell, self.grid.shape[1])
        rows = self.grid[iy] * (1 - fy)[:, None] + self.grid[iy + 1] * fy[:, None]
        out: Array = rows[:, ix] * (1 - fx) + rows[:, ix + 1] * fx
        return out


def _blend(coords: Array, origin: float, cell: float, size: int) -> tuple[NDArray[np.intp], Array]:
    """Lower grid node and smoothstep weight of the upper one, for nodes
    ``origin + i * cell`` (``i < size``) at ``coords``."""
    g = np.clip((coords - origin) / cell, 0.0, size - 1.001)
    f = g - np.floor(g)
    return g.astype(np.intp), f * f * (3.0 - 2.0 * f)


Pattern = Literal["solid", "stripes", "checks", "blotches"]


@dataclass(frozen=True)
class PatternTexture:
    """Two colours in a pattern, with grain, optional cylinder shading and a brightness.

    ``stripes`` and ``checks`` run along ``direction`` (a unit vector) with ``period``
    pixels; ``blotches`` blends the colours by ``noise``. ``grain`` (a second noise) varies
    the brightness by ``grain_amount``. ``shade`` is ``(p0, p1, radius, amount)``: a
    cylinder around the segment ``p0 -> p1``, darker by up to ``amount`` at its rim.
    """

    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    pattern: Pattern = "solid"
    direction: tuple[float, float] = (1.0, 0.0)
    period: float = 8.0
    phase: float = 0.0
    noise: ValueNoise | None = None
    grain: ValueNoise | None = None
    grain_amount: float = 0.0
    shade: tuple[tuple[float, float], tuple[float, float], float, float] | None = None
    brightness: float = 1.0

    def render(self, x: Array, y: Array) -> Array:
        """See :class:`Texture`."""
        a, b = np.asarray(self.colour_a, np.float32), np.asarray(self.colour_b, np.float32)
        gain: Array | float = self.brightness
        if self.grain is not None:
            gain = gain * (1.0 + self.grain_amount * (self.grain(x, y) - 0.5))
        if self.shade is not None:
            (ax, ay), (bx, by), radius, amount = self.shade
            dx, dy = bx - ax, by - ay
            t = np.clip(((x - ax) * dx + (y - ay) * dy) / max(dx * dx + dy * dy, 1e-12), 0, 1)
            off = np.minimum(np.hypot(x - ax - t * dx, y - ay - t * dy) / max(radius, 1e-6), 1)
            gain = gain * (1.0 - amount + amount * np.sqrt(1.0 - off * off))
        shape = np.broadcast_shapes(x.shape, y.shape)
        gain = np.broadcast_to(np.asarray(gain, np.float32), shape)[..., None]
        if self.pattern == "solid":
            out: Array = gain * a
        else:
            if self.pattern == "blotches" and self.noise is not None:
                mix = np.clip((self.noise(x, y) - 0.5) * 4.0 + 0.5, 0.0, 1.0)
            else:
                dx, dy = self.direction
                mix = np.sin(2 * np.pi * ((x * dx + y * dy) / self.period + self.phase))
                if self.pattern == "checks":
                    mix = mix * np.sin(2 * np.pi * ((y * dx - x * dy) / self.period + self.phase))
                mix = np.clip(mix * 3.0 + 0.5, 0.0, 1.0)
            out = gain * a + (gain * mix[..., None]) * (b - a)
        return out


# Directions on the unit head sphere in the head's frame (x: the person's left, y: up,
# z: the face's front), for the face points and their decals.
_EYE = np.array([0.36, 0.16, 0.92])
_NOSE = np.array([0.0, -0.12, 0.99])
_MOUTH = np.array([0.0, -0.45, 0.89])
_EAR = np.array([0.99, 0.0, -0.05])
_FACE_DIRECTIONS = (
    _NOSE,
    _EYE,
    _EYE * np.array([-1.0, 1.0, 1.0]),
    _EAR,
    _EAR * np.array([-1.0, 1.0, 1.0]),
)
# A face point counts as visible when its direction's component towards the camera
# exceeds this (the ears stick out, so they are seen from behind as well).
_FACE_FACING = (0.25, 0.25, 0.25, -0.35, -0.35)
_FACE_RADIUS = 0.93  # face points sit just inside the head's outline


def _unit(v: Array) -> Array:
    out: Array = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return out


@dataclass(frozen=True)
class HeadTexture:
    """A shaded sphere with hair and a face, seen through ``rotation`` (head -> camera).

    Camera axes: ``x`` right, ``y`` up, ``z`` towards the viewer; the image plane is
    additionally rotated by ``roll`` radians (as the whole figure is).
    """

    centre: tuple[float, float]
    radius: float
    rotation: Array
    roll: float
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    eyes: tuple[float, float, float]
    hair_front: float
    hair_top: float
    brightness: float

    def render(self, x: Array, y: Array) -> Array:
        """See :class:`Texture`."""
        c, s = math.cos(self.roll), math.sin(self.roll)
        dx, dy = (x - self.centre[0]) / self.radius, (y - self.centre[1]) / self.radius
        u, v = c * dx + s * dy, -s * dx + c * dy  # undo the in-plane rotation
        z = np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, 1.0))
        normal_cam = np.stack((u, -v, z), axis=-1)
        n = normal_cam @ self.rotation.astype(np.float32)  # rotation.T @ normal, per point
        skin = np.asarray(self.skin, np.float32)
        colour = np.broadcast_to(skin, (*z.shape, 3)).copy()
        hair = (n[..., 2] < self.hair_front) | (n[..., 1] > self.hair_top)
        colour[hair] = self.hair
        flip = np.array([-1.0, 1.0, 1.0], np.float32)
        for direction, width, paint in (
            (_EAR, 0.30, skin * 0.85),
            (_EAR * flip, 0.30, skin * 0.85),
            (_EYE, 0.12, np.asarray(self.eyes, np.float32)),
            (_EYE * flip, 0.12, np.asarray(self.eyes, np.float32)),
            (_NOSE, 0.13, skin * 0.72),
        ):
            colour[n @ _unit(direction).astype(np.float32) > math.cos(width)] = paint
        mouth_dir = _unit(_MOUTH).astype(np.float32)
        mouth = (n @ mouth_dir > math.cos(0.2)) & (np.abs(n[..., 1] - float(mouth_dir[1])) < 0.05)
        colour[mouth] = skin * np.array([0.75, 0.35, 0.35], np.float32)
        out: Array = colour * (self.brightness * (0.7 + 0.3 * z))[..., None]
        return out


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class Layer:
    """One painted shape. ``owner`` is the person index (-1 for scenery); ``part`` names
    the body part (``""`` for scenery); layers are painted in list order (far to near)."""

    shape: Shape
    texture: Texture
    owner: int = -1
    part: str = ""


@dataclass(frozen=True)
class SceneFigure:
    """One person's keypoints and what makes each joint visible.

    Attributes:
        keypoints: ``(17, 2)`` COCO-17 ``(x, y)`` image pixels (possibly outside the image).
        depth: ``(17,)`` joints' distance towards the camera, in body heights.
        torso_depth: the torso centre's distance towards the camera.
        own_parts: per joint, the body parts that show the joint when they are on top: its
            limbs (or the head), and the torso for a shoulder or hip on the torso's near
            side (a far-side one is hidden by the torso in front of it).
        facing_away: ``(17,)`` bool, face points turned away from the camera.
    """

    keypoints: Array
    depth: Array
    torso_depth: float
    own_parts: tuple[frozenset[str], ...]
    facing_away: NDArray[np.bool_]


@dataclass(frozen=True)
class Scene:
    """Everything needed to render and annotate one image."""

    size: tuple[int, int]
    layers: tuple[Layer, ...]
    figures: tuple[SceneFigure, ...]
    noise_sigma: float
    noise_seed: int


@dataclass(frozen=True)
class Rendered:
    """A rendered scene.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        layer_index: ``(H, W)`` int32 index of the top layer whose inside holds the pixel
            centre (-1 for none).
        silhouettes: ``(P, H, W)`` bool, each person's whole (amodal) silhouette.
    """

    image: NDArray[np.uint8]
    layer_index: NDArray[np.int32]
    silhouettes: NDArray[np.bool_]


def render_scene(scene: Scene, keep: Callable[[Layer], bool] | None = None) -> Rendered:
    """Paint the layers far to near with anti-aliased edges, then add sensor noise.

    Args:
        scene: from :func:`sample_scene`.
        keep: optional filter; layers it rejects are skipped (their indices stay the same),
            e.g. to see what a joint looks like without an occluder.

    Returns:
        The image, the top layer per pixel and the people's silhouettes.
    """
    height, width = scene.size
    canvas = np.zeros((height, width, 3), np.float32)
    index = np.full((height, width), -1, dtype=np.int32)
    silhouettes = np.zeros((len(scene.figures), height, width), dtype=bool)
    for i, layer in enumerate(scene.layers):
        if keep is not None and not keep(layer):
            continue
        bx0, by0, bx1, by1 = layer.shape.bounds()
        x0, y0 = max(math.floor(bx0), 0), max(math.floor(by0), 0)
        x1, y1 = min(math.ceil(bx1) + 1, width), min(math.ceil(by1) + 1, height)
        if x0 >= x1 or y0 >= y1:
            continue
        x = np.arange(x0, x1, dtype=np.float32)[None, :]
        y = np.arange(y0, y1, dtype=np.float32)[:, None]
        dist = layer.shape.sdf(x, y)
        alpha = np.clip(0.5 - dist, 0.0, 1.0)
        if not alpha.any():
            continue
        colour = layer.texture.render(x, y)
        if alpha.min() == 1.0:
            canvas[y0:y1, x0:x1] = colour
        else:
            region = canvas[y0:y1, x0:x1]
            region += alpha[..., None] * (colour - region)
        inside = dist <= 0
        index[y0:y1, x0:x1][inside] = i
        if layer.owner >= 0:
            silhouettes[layer.owner, y0:y1, x0:x1] |= inside
    noise = np.random.default_rng(scene.noise_seed).standard_normal(canvas.shape, np.float32)
    canvas = canvas * 255.0 + scene.noise_sigma * noise
    image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return Rendered(image, index, silhouettes)


@dataclass(frozen=True)
class PersonAnnotation:
    """A COCO person annotation without ids.

    Attributes:
        keypoints: ``(17, 3)`` ``(x, y, v)``; ``v=0`` rows are zeros.
        bbox: ``(x, y, w, h)`` amodal box in pixels (pixel centres on integers).
        area: amodal silhouette area in pixels.
    """

    keypoints: Array
    bbox: tuple[float, float, float, float]
    area: float

    @property
    def num_keypoints(self) -> int:
        """Number of labelled joints (``v > 0``)."""
        return int((self.keypoints[:, 2] > 0).sum())


def annotate_scene(scene: Scene, rendered: Rendered) -> list[PersonAnnotation]:
    """COCO keypoints, visibility flags, boxes and areas of the people in a scene.

    A joint inside the image is visible (``v=2``) when the top layer at its pixel is one of
    its own body parts (and, for a face point, the face point faces the camera), else
    hidden (``v=1``); outside ``[0, W-1] x [0, H-1]`` it is ``v=0`` with zero coordinates.
    People whose silhouette misses the image get an empty box and zero area.

    Args:
        scene: the scene.
        rendered: its full render (:func:`render_scene` without ``keep``).

    Returns:
        One annotation per figure, in scene order.
    """
    height, width = scene.size
    out = []
    for p, figure in enumerate(scene.figures):
        keypoints = np.zeros((len(figure.keypoints), 3))
        for j, (x, y) in enumerate(figure.keypoints):
            if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
                continue
            top = int(rendered.layer_index[round(y), round(x)])
            layer = scene.layers[top] if top >= 0 else None
            shown = (
                layer is not None
                and layer.owner == p
                and layer.part in figure.own_parts[j]
                and not figure.facing_away[j]
            )
            keypoints[j] = (round(x, 2), round(y, 2), 2 if shown else 1)
        rows, cols = np.nonzero(rendered.silhouettes[p])
        if len(rows):
            bbox = (
                float(cols.min()) - 0.5,
                float(rows.min()) - 0.5,
                float(cols.max() - cols.min() + 1),
                float(rows.max() - rows.min() + 1),
            )
        else:
            bbox = (0.0, 0.0, 0.0, 0.0)
        out.append(PersonAnnotation(keypoints, bbox, float(len(rows))))
    return out


# --------------------------------------------------------------------------- colours


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _colour(
    rng: np.random.Generator, sat: tuple[float, float] = (0.1, 0.9)
) -> tuple[float, float, float]:
    return _hsv(rng.random(), rng.uniform(*sat), rng.uniform(0.15, 0.95))


_SKIN_TONES = ((0.96, 0.80, 0.69), (0.87, 0.67, 0.53), (0.72, 0.51, 0.38), (0.49, 0.33, 0.24))
_HAIR = ((0.08, 0.06, 0.05), (0.30, 0.18, 0.10), (0.75, 0.60, 0.35), (0.55, 0.55, 0.55))


def _jitter(
    rng: np.random.Generator, c: Sequence[float], amount: float
) -> tuple[float, float, float]:
    r, g, b = np.clip(np.asarray(c) * rng.uniform(1 - amount, 1 + amount), 0, 1)
    return (float(r), float(g), float(b))


@dataclass(frozen=True)
class _Fabric:
    """A clothing or scenery material: colours and pattern, laid out per layer."""

    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    pattern: Pattern
    period: float  # in units of the owner's scale
    across: bool  # stripes run across a limb (rings) rather than along it
    grain_amount: float

    @classmethod
    def sample(cls, rng: np.random.Generator, plain: float = 0.35) -> _Fabric:
        a = _colour(rng)
        b = _colour(rng) if rng.random() < 0.6 else _jitter(rng, a, 0.5)
        pattern: Pattern = "solid"
        if rng.random() > plain:
            pattern = ("stripes", "checks", "blotches")[int(rng.integers(3))]
        return cls(
            a, b, pattern, rng.uniform(0.03, 0.09), bool(rng.random() < 0.6), rng.uniform(0.1, 0.5)
        )

    def texture(
        self,
        rng: np.random.Generator,
        bounds: tuple[float, float, float, float],
        scale: float,
        axis: tuple[tuple[float, float], tuple[float, float]] | None = None,
        radius: float = 0.0,
        brightness: float = 1.0,
    ) -> PatternTexture:
        """The fabric on one layer; ``axis`` (a limb's segment) orients and shades it."""
        if axis is not None:
            (ax, ay), (bx, by) = axis
            length = max(math.hypot(bx - ax, by - ay), 1e-6)
            direction = ((bx - ax) / length, (by - ay) / length)
            if not self.across:
                direction = (-direction[1], direction[0])
        else:
            angle = rng.uniform(0, math.pi)
            direction = (math.cos(angle), math.sin(angle))
        period = max(self.period * scale, 2.5)
        return PatternTexture(
            self.colour_a,
            self.colour_b,
            self.pattern,
            direction,
            period,
            phase=rng.random(),
            noise=ValueNoise.covering(rng, bounds, period * 1.5)
            if self.pattern == "blotches"
            else None,
            grain=ValueNoise.covering(rng, bounds, rng.uniform(1.2, 3.0)),
            grain_amount=self.grain_amount,
            shade=(axis[0], axis[1], radius, 0.35) if axis is not None else None,
            brightness=brightness,
        )


# -------------------------------------------------------------------------- figures


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


def _pt(p: Array) -> tuple[float, float]:
    return (float(p[0]), float(p[1]))


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


# ---------------------------------------------------------------------------- scenery


def _random_shape(rng: np.random.Generator, centre: Array, size: float) -> Shape:
    """An ellipse, a (sometimes pole- or bar-like) box, a blob or a stick around ``centre``."""
    kind = int(rng.integers(4))
    cx, cy = float(centre[0]), float(centre[1])
    if kind == 0:
        axes = (size * rng.uniform(0.3, 1), size * rng.uniform(0.3, 1))
        return Ellipse((cx, cy), axes, rng.uniform(0, math.pi))
    if kind == 1:
        w, h = size * rng.uniform(0.2, 1), size * rng.uniform(0.2, 1)
        if rng.random() < 0.4:
            w, h = (size * 0.15, size * 2.0) if rng.random() < 0.5 else (size * 2.0, size * 0.2)
        a = rng.normal(0, 0.3)
        c, s = math.cos(a), math.sin(a)
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) @ np.array([[c, s], [-s, c]])
        return Polygon(tuple((cx + float(x), cy + float(y)) for x, y in corners))
    if kind == 2:
        return Polygon(convex_hull(centre + rng.normal(0, size * 0.6, (7, 2))))
    angle = rng.uniform(0, 2 * math.pi)
    tip = centre + size * np.array([math.cos(angle), math.sin(angle)])
    return Capsule((cx, cy), _pt(tip), size * rng.uniform(0.1, 0.3), size * rng.uniform(0.1, 0.3))


def _textured(rng: np.random.Generator, shape: Shape, scale: float) -> Layer:
    """A scenery layer in a random fabric."""
    return Layer(shape, _Fabric.sample(rng).texture(rng, shape.bounds(), scale))


def _distractor(
    rng: np.random.Generator, start: Array, scale: float, fabric: _Fabric
) -> list[Layer]:
    """A limb-like chain of two or three capsules dressed in a person's fabric."""
    layers = []
    angle = rng.uniform(0, 2 * math.pi)
    radius = scale * rng.uniform(0.025, 0.05)
    for _ in range(int(rng.integers(2, 4))):
        angle += rng.normal(0, 0.8)
        end = start + scale * rng.uniform(0.13, 0.24) * np.array([math.cos(angle), math.sin(angle)])
        shape = Capsule(_pt(start), _pt(end), radius, radius * rng.uniform(0.7, 1.0))
        tex = fabric.texture(rng, shape.bounds(), scale, (_pt(start), _pt(end)), radius)
        layers.append(Layer(shape, tex))
        start = end
    return layers


def _background(rng: np.random.Generator, size: tuple[int, int]) -> list[Layer]:
    """A textured backdrop, half of the time with a floor of another texture."""
    height, width = float(size[0]), float(size[1])
    full = Polygon(((-1.0, -1.0), (width + 1, -1.0), (width + 1, height + 1), (-1.0, height + 1)))
    layers = [_textured(rng, full, min(size) * rng.uniform(1.0, 4.0))]
    if rng.random() < 0.5:
        y0, y1 = (float(y) for y in rng.uniform(0.35, 0.9, 2) * height)
        floor = Polygon(((-1.0, y0), (width + 1, y1), (width + 1, height + 1), (-1.0, height + 1)))
        layers.append(_textured(rng, floor, min(size) * rng.uniform(0.5, 2.0)))
    return layers


def _scenery(
    rng: np.random.Generator,
    size: tuple[int, int],
    fabrics: Sequence[_Fabric],
    scale: float,
    style: SceneStyle,
) -> list[Layer]:
    """Background clutter: random shapes and limb-like distractors in the people's fabrics."""
    height, width = size
    layers: list[Layer] = []
    for _ in range(int(rng.integers(*style.clutter_count))):
        centre = rng.uniform([0, 0], [width, height])
        if rng.random() < style.distractor_p:
            fabric = fabrics[int(rng.integers(len(fabrics)))]
            layers += _distractor(rng, centre, scale * rng.uniform(0.4, 0.9), fabric)
        else:
            shape = _random_shape(rng, centre, min(size) * rng.uniform(0.05, 0.3))
            layers.append(_textured(rng, shape, min(size) * 0.3))
    return layers


def _occluders(
    rng: np.random.Generator,
    figures: Sequence[SceneFigure],
    fabrics: Sequence[_Fabric],
    scale: float,
    style: SceneStyle,
) -> list[Layer]:
    """Things in front of people: for about half of them, a shape (or a distractor limb)
    over one of their joints."""
    layers: list[Layer] = []
    for figure in figures:
        if rng.random() < style.occluder_p:
            size = scale * rng.uniform(0.06, 0.2)
            centre = figure.keypoints[int(rng.integers(17))] + rng.normal(0, 0.3 * size, 2)
            if rng.random() < 0.2:
                fabric = fabrics[int(rng.integers(len(fabrics)))]
                layers += _distractor(rng, centre, size * 4, fabric)
            else:
                layers.append(_textured(rng, _random_shape(rng, centre, size), size * 3))
    return layers


def _place(
    rng: np.random.Generator,
    joints: Array,
    scale: float,
    roll: float,
    size: tuple[int, int],
    others: Sequence[Array],
    style: SceneStyle,
) -> Array:
    """The image offset of a figure: mostly inside the image, sometimes overlapping one of
    the ``others`` (their offsets); the pelvis always inside."""
    frame = np.array([size[1], size[0]], dtype=np.float64)
    flat = _project(joints, scale, roll, np.zeros(2))
    lo, hi = flat.min(0), flat.max(0)
    if others and rng.random() < style.overlap_p:
        target = others[int(rng.integers(len(others)))] + rng.normal(0, 0.25 * scale, 2)
    else:
        margin = np.minimum((hi - lo) * 0.4, frame * 0.45)
        target = rng.uniform(margin, frame - margin)
    offset: Array = target - (lo + hi) / 2
    pelvis = _project(np.zeros((1, 3)), scale, roll, offset)[0]
    placed: Array = offset + np.clip(pelvis, 2, frame - 3) - pelvis
    return placed


def _scene_figure(figure: _Figure3D, scale: float, roll: float, offset: Array) -> SceneFigure:
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


def sample_scene(
    rng: np.random.Generator,
    image_size: tuple[int, int],
    num_persons: int,
    style: SceneStyle = CLEAN,
) -> Scene:
    """Sample one image's people, scenery, occluders and noise.

    Args:
        rng: the random source (consumed).
        image_size: ``(H, W)``.
        num_persons: people in the image (each keeps its pelvis inside the image).
        style: how hard the scene is (:data:`CLEAN`, :data:`CLUTTERED` or your own).

    Returns:
        The scene; render it with :func:`render_scene`, label it with
        :func:`annotate_scene`.
    """
    height = image_size[0]
    person_scale = height * (1.0, 0.85, 0.72, 0.62)[min(num_persons, 4) - 1]
    painted: list[tuple[float, list[Layer]]] = []  # (nearness, layers far to near) per person
    figures: list[SceneFigure] = []
    fabrics: list[_Fabric] = []
    offsets: list[Array] = []
    for owner in range(num_persons):
        figure, outfit = _Figure3D.sample(rng, style), _Outfit.sample(rng)
        fabrics += [outfit.top, outfit.bottom]
        roll = rng.normal(0, 0.15) if rng.random() < style.upright_p else rng.uniform(-1.8, 1.8)
        scale = person_scale * rng.uniform(0.4, 0.95)
        offset = _place(rng, figure.joints, scale, roll, image_size, offsets, style)
        offsets.append(offset)
        by_depth = _figure_layers(rng, figure, outfit, owner, scale, roll, offset)
        figures.append(_scene_figure(figure, scale, roll, offset))
        # nearer people, mostly the bigger ones, are painted later
        nearness = rng.normal(scale, 0.1 * height)
        painted.append((nearness, [layer for _, layer in sorted(by_depth, key=lambda t: t[0])]))
    people = [layer for _, layers in sorted(painted, key=lambda t: t[0]) for layer in layers]
    layers = (
        _background(rng, image_size)
        + _scenery(rng, image_size, fabrics, person_scale, style)
        + people
        + _occluders(rng, figures, fabrics, person_scale, style)
    )
    return Scene(
        image_size,
        tuple(layers),
        tuple(figures),
        noise_sigma=float(rng.uniform(*style.noise_sigma)),
        noise_seed=int(rng.integers(2**63)),
    )


# ------------------------------------------------------------------------- data set


@dataclass(frozen=True)
class SyntheticPaths:
    """Where a generated set lives.

    Attributes:
        root: the cache folder.
        images: the image folder (both splits).
        train_ann: ``person_keypoints_train.json``.
        val_ann: ``person_keypoints_val.json``.
    """

    root: Path
    images: Path
    train_ann: Path
    val_ann: Path


def coco_category() -> dict[str, Any]:
    """The COCO ``person`` category with the 17 COCO joint names and 1-based links."""
    return {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(COCO_17.names),
        "skeleton": [[a + 1, b + 1] for a, b in COCO_17.links],
    }


_SPLITS = ("train", "val")


def _image_rng(seed: int, split: str, index: int) -> tuple[np.random.Generator, int]:
    """An image's own generator and the number of people it asks for (its first draw)."""
    rng = np.random.default_rng([seed, _SPLITS.index(split), index])
    return rng, 1 + int(rng.choice(len(_PERSONS_PER_IMAGE), p=_PERSONS_PER_IMAGE))


def _plan_split(seed: int, split: str, num_persons: int) -> list[int]:
    """People per image: each image's own draw, the last one cut to hit ``num_persons``."""
    counts: list[int] = []
    while (left := num_persons - sum(counts)) > 0:
        counts.append(min(_image_rng(seed, split, len(counts))[1], left))
    return counts


@dataclass(frozen=True)
class _ImageTask:
    images_dir: Path
    split: str
    index: int
    num_persons: int
    image_size: tuple[int, int]
    seed: int
    style: SceneStyle

    @property
    def file_name(self) -> str:
        return f"{self.split}_{self.index:06d}.jpg"


def _make_image(task: _ImageTask) -> list[PersonAnnotation]:
    """Render, save and annotate one image (runs in a worker process)."""
    rng, _ = _image_rng(task.seed, task.split, task.index)
    scene = sample_scene(rng, task.image_size, task.num_persons, task.style)
    rendered = render_scene(scene)
    Image.fromarray(rendered.image).save(task.images_dir / task.file_name, quality=_JPEG_QUALITY)
    return annotate_scene(scene, rendered)


def _coco_json(
    split: str, seed: int, results: Sequence[tuple[_ImageTask, list[PersonAnnotation]]]
) -> dict[str, Any]:
    """The COCO annotation file of one split."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for task, people in results:
        image_id = task.index + 1
        height, width = task.image_size
        images.append(
            {"id": image_id, "file_name": task.file_name, "height": height, "width": width}
        )
        for person in people:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "keypoints": [
                        round(float(v), 2) if i % 3 < 2 else int(v)
                        for i, v in enumerate(person.keypoints.ravel())
                    ],
                    "num_keypoints": person.num_keypoints,
                    "bbox": [round(v, 2) for v in person.bbox],
                    "area": person.area,
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": f"posemum-aug synthetic persons, {split} split", "seed": seed},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [coco_category()],
    }


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        out: dict[str, Any] = json.loads((root / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return out


def generate_synthetic_coco(
    root: str | Path,
    *,
    num_train: int,
    num_val: int,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
    style: SceneStyle | str = "clean",
    progress: bool = True,
    workers: int | None = None,
) -> SyntheticPaths:
    """Generate the synthetic person-keypoint set into ``root`` once, or reuse it.

    Every image has its own random generator, seeded by ``(seed, split, image index)``,
    so the output is a pure function of the arguments (same bytes on the same numpy and
    Pillow). The set is built in a temporary folder beside ``root`` and moved into place
    when complete, with ``manifest.json`` (the arguments and :data:`GENERATOR_VERSION`);
    a later call with the same arguments returns at once, one with other arguments
    rebuilds the folder. Callers running in parallel (several ranks) should let one
    process generate first.

    Args:
        root: cache folder; created if needed. If it exists it must be empty or hold a
            set made by this function (it is replaced when the arguments differ).
        num_train: people (annotations) in the training split, >= 1.
        num_val: people in the validation split, >= 1.
        image_size: ``(H, W)`` of every image, each >= 32.
        seed: the random seed.
        style: how hard the scenes are: a :class:`SceneStyle` or the name of one in
            :data:`STYLES` (``"clean"``, the default, or ``"cluttered"``).
        progress: show a tqdm bar while generating.
        workers: processes rendering images in parallel; ``None`` uses the usable CPUs
            (at most 8), 0 or 1 renders in this process. The output does not depend on it.

    Returns:
        The folder, image folder and both annotation files.

    Raises:
        ValueError: on bad counts or size, an unknown style name, or if ``root`` is a
            non-empty folder that this function did not make.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.mkdtemp()
        >>> paths = generate_synthetic_coco(
        ...     tmp + "/synth", num_train=3, num_val=2, progress=False, workers=0
        ... )
        >>> import json
        >>> len(json.loads(paths.val_ann.read_text())["annotations"])
        2
    """
    for name, value in (("num_train", num_train), ("num_val", num_val)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) < 32:
        raise ValueError(f"image_size must be (H, W) with both >= 32, got {image_size!r}")
    height, width = size
    if isinstance(style, str):
        if style not in STYLES:
            raise ValueError(
                f"style must be one of {sorted(STYLES)} or a SceneStyle, got {style!r}"
            )
        style = STYLES[style]
    root = Path(root)
    paths = SyntheticPaths(
        root,
        root / "images",
        root / "person_keypoints_train.json",
        root / "person_keypoints_val.json",
    )
    params = {
        "version": GENERATOR_VERSION,
        "num_train": num_train,
        "num_val": num_val,
        "image_size": [height, width],
        "seed": int(seed),
        "style": json.loads(json.dumps(dataclasses.asdict(style))),
    }
    if _read_manifest(root) == params:
        return paths
    if root.is_dir() and any(root.iterdir()) and _read_manifest(root) is None:
        raise ValueError(
            f"{root} is not empty and holds no synthetic set ({_MANIFEST} missing); "
            "refusing to overwrite it"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        (tmp / "images").mkdir()
        tasks = [
            _ImageTask(tmp / "images", split, index, count, (height, width), int(seed), style)
            for split, total in zip(_SPLITS, (num_train, num_val), strict=True)
            for index, count in enumerate(_plan_split(int(seed), split, total))
        ]
        workers = min(_usable_cpus(), 8) if workers is None else workers
        with (
            tqdm(
                total=num_train + num_val, unit="person", desc="synthetic set", disable=not progress
            ) as bar,
            ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool,
        ):
            results = []
            for task, people in zip(
                tasks,
                pool.map(_make_image, tasks, chunksize=8) if pool else map(_make_image, tasks),
                strict=True,
            ):
                results.append((task, people))
                bar.update(task.num_persons)
        for split in _SPLITS:
            coco = _coco_json(split, int(seed), [r for r in results if r[0].split == split])
            (tmp / f"person_keypoints_{split}.json").write_text(
                json.dumps(coco, separators=(",", ":"))
            )
        (tmp / _MANIFEST).write_text(json.dumps(params, indent=2))
        old = None
        if root.exists():
            old = tmp.with_name(tmp.name + ".old")
            os.replace(root, old)
        os.replace(tmp, root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths
