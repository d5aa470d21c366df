"""A scene, its render and its COCO labels.

A :class:`Scene` holds :class:`Layer` s (a shape, a texture, and the person and body part
that own it) in painting order, far to near, and one :class:`SceneFigure` per person (its
keypoints and which body parts show each joint). :func:`render_scene` paints the layers
into an image and records the top layer at each pixel and each person's silhouette;
:func:`annotate_scene` reads the COCO keypoints, visibility flags, boxes and areas off
that render.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .shapes import Array, Shape
from .textures import Texture


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
