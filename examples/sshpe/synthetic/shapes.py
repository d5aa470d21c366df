"""Regions of the image plane as signed-distance functions.

Every painted layer has a :class:`Shape`: a :class:`Capsule` (limbs, sticks,
distractors), an :class:`Ellipse` (heads, chest prints, blobs) or a convex
:class:`Polygon` (torsos, boxes, backdrops; :func:`convex_hull` makes one from points).
Distances are in pixels, negative inside, on a grid of pixel centres at integer
coordinates; :func:`~sshpe.synthetic.scene.render_scene` turns them into anti-aliased
coverage ``clip(0.5 - distance, 0, 1)``. :data:`Array`, the float array type, is shared by
the whole package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

#: Float arrays: points, pixel grids, distances, colours.
Array = NDArray[np.floating[Any]]


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


def _pt(p: Array) -> tuple[float, float]:
    """A point of an array as the ``(x, y)`` floats that shapes take."""
    return (float(p[0]), float(p[1]))
