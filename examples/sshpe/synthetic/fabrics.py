"""Colours and fabrics of clothes and scenery.

Random colours, skin and hair tones, and :class:`_Fabric`: a material (two colours in a
pattern, with grain) that becomes a
:class:`~sshpe.synthetic.textures.PatternTexture` on each layer it covers, its stripes
along or across a limb with cylinder shading, or in any direction on scenery.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .textures import Pattern, PatternTexture, ValueNoise


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
