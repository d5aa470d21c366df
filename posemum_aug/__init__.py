"""posemum-aug: exact Pose-MUM tile mixing, an EMAN teacher and keypoint-aware tools.

See ``docs/`` for the conventions (shapes, coordinates, random generators).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
