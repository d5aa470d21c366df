"""Colours of the painted layers, evaluated on the same pixel grid as the shapes.

* :class:`ValueNoise`: smooth random noise, for blotches and grain;
* :class:`PatternTexture`: two colours in a pattern (solid, stripes, checks or
  blotches) with grain, cylinder shading about a limb's axis and a brightness: clothes,
  skin and scenery;
* :class:`HeadTexture`: a shaded head sphere with hair, eyes, nose, mouth and ears, seen
  from any direction, so the face shows only from the front and hair covers the back of
  the head.

The directions of the face points on the head sphere are also where
:mod:`~sshpe.synthetic.figures` puts the five face keypoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from .shapes import Array


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
