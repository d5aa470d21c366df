"""What surrounds the people: a textured backdrop, half of the time with a floor;
background clutter of random shapes and (cluttered style) limb-like distractors dressed in
the people's fabrics; and occluders in front of people's joints."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .fabrics import _Fabric
from .scene import Layer, SceneFigure
from .shapes import Array, Capsule, Ellipse, Polygon, Shape, _pt, convex_hull
from .style import SceneStyle


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
