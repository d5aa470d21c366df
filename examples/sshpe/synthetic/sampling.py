"""One image's scene: :func:`sample_scene` places its people, stacks their layers far to
near, and puts the scenery behind them and the occluders in front."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .fabrics import _Fabric
from .figures import _Figure3D, _figure_layers, _Outfit, _project, _scene_figure
from .scene import Layer, Scene, SceneFigure
from .scenery import _background, _occluders, _scenery
from .shapes import Array
from .style import CLEAN, SceneStyle


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
