"""Stand-ins that let mmpose 1.3.2 run models on a pip-only CPU install.

The example's own code needs none of this. Three things in the mmpose stack get in the
way of a CPU install from PyPI alone, as used by our tests and CI:

* ``mmcv`` (full) publishes no wheels for recent torch and takes about 16 minutes to build,
  so we install ``mmcv-lite``, which lacks the compiled ``mmcv.ops``. mmpose imports
  ``mmcv.ops.MultiScaleDeformableAttention`` for EDPose's head whenever ``mmpose.models``
  is imported. :func:`install` registers an ``mmcv.ops`` whose classes raise when built,
  so every model that does not use those ops works.
* torchvision does not import beside the CPU torch wheel, and ``mmpose.visualization``
  (imported by ``register_all_modules`` and by the Runner's visualizer) imports it for
  ``SimCCVisualizer`` alone. :func:`install` registers a ``simcc_vis`` module whose
  visualizer raises when built.
* mmengine 0.10.7 saves numpy objects in its checkpoints, which ``torch.load``'s default
  ``weights_only=True`` (torch >= 2.6) refuses on resume. :func:`install` sets
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` unless it is set; load only checkpoints you trust.

Each stand-in is installed only where the real module cannot be imported, so an install
with full mmcv and torchvision runs untouched.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from typing import Any, NoReturn

#: The ``mmcv.ops`` names that mmpose imports at module level.
MMCV_OPS = ("MultiScaleDeformableAttention", "DeformConv2d", "ModulatedDeformConv2d")


def _missing(name: str, needs: str) -> type:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImportError(f"{name} needs {needs}, which this install lacks")

    return type(name, (), {"__init__": __init__, "__module__": "posemum_mmpose.lite"})


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:
        return False
    return True


def install() -> list[str]:
    """Register the stand-ins this install needs; call it before importing mmpose.

    Returns:
        The names of the modules replaced (empty with full mmcv and torchvision).
    """
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    replaced = []
    if "mmcv.ops" not in sys.modules and importlib.util.find_spec("mmcv._ext") is None:
        ops = types.ModuleType("mmcv.ops")
        for name in MMCV_OPS:
            setattr(ops, name, _missing(name, "full mmcv (compiled ops)"))
        sys.modules["mmcv.ops"] = ops
        replaced.append("mmcv.ops")
    simcc = "mmpose.visualization.simcc_vis"
    if simcc not in sys.modules and not _importable("torchvision"):
        vis = types.ModuleType(simcc)
        vis.SimCCVisualizer = _missing("SimCCVisualizer", "torchvision")  # type: ignore[attr-defined]
        sys.modules[simcc] = vis
        replaced.append(simcc)
    return replaced
