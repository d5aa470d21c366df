"""Stand-ins that let mmpose 1.3.2 run on a CPU-only install from PyPI alone (how CI runs).

Not part of the plugin: put this folder on ``PYTHONPATH`` (``PYTHONPATH=examples/mmpose/
cpu_only``) and Python runs it at start-up, in every process, stock ``tools/train.py``
and its ``dist_train.sh`` workers included. Each stand-in applies only where the real
thing is missing, so with full mmcv, torchvision and CUDA nothing changes:

* ``mmcv`` (full) publishes no wheels for recent torch and takes about 16 minutes to build,
  so the pip-only install has ``mmcv-lite``, which lacks the compiled ``mmcv.ops``. mmpose
  imports ``mmcv.ops`` for EDPose's head whenever ``mmpose.models`` is imported. The
  stand-in ``mmcv.ops`` has classes that raise when built, so every model that does not
  use those ops works.
* torchvision does not import beside the CPU torch wheel, and ``mmpose.visualization``
  imports it for ``SimCCVisualizer`` alone: that module gets a visualizer that raises when
  built.
* mmengine's ``--launcher pytorch`` calls ``torch.cuda.set_device(LOCAL_RANK)``, which a
  CPU-only torch cannot do: without CUDA it does nothing (``gloo`` needs no device).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any, NoReturn

#: The ``mmcv.ops`` names that mmpose imports at module level.
MMCV_OPS = ("MultiScaleDeformableAttention", "DeformConv2d", "ModulatedDeformConv2d")


def _missing(name: str, needs: str) -> type:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImportError(f"{name} needs {needs}, which this install lacks")

    return type(name, (), {"__init__": __init__, "__module__": __name__})


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:
        return False
    return True


def install() -> list[str]:
    """Put the stand-ins this install needs in place; returns what was replaced."""
    replaced = []
    if (
        importlib.util.find_spec("mmcv") is not None
        and importlib.util.find_spec("mmcv._ext") is None
    ):
        ops = types.ModuleType("mmcv.ops")
        for name in MMCV_OPS:
            setattr(ops, name, _missing(name, "full mmcv (compiled ops)"))
        sys.modules["mmcv.ops"] = ops
        replaced.append("mmcv.ops")
    simcc = "mmpose.visualization.simcc_vis"
    if not _importable("torchvision"):
        vis = types.ModuleType(simcc)
        vis.SimCCVisualizer = _missing("SimCCVisualizer", "torchvision")  # type: ignore[attr-defined]
        sys.modules[simcc] = vis
        replaced.append(simcc)
    import torch

    if not torch.cuda.is_available():
        torch.cuda.set_device = lambda device: None
        replaced.append("torch.cuda.set_device")
    return replaced


REPLACED = install()
