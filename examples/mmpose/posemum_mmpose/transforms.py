"""The pipeline step that marks a dataset's crops as labelled or not."""

from __future__ import annotations

from typing import Any

from mmcv.transforms import BaseTransform
from mmpose.registry import TRANSFORMS


@TRANSFORMS.register_module()
class SetLabelled(BaseTransform):
    """Set ``results["labelled"]``; list ``"labelled"`` in ``PackPoseInputs``' ``meta_keys``.

    Args:
        labelled: whether the dataset's keypoints train the student.

    Raises:
        ValueError: if ``labelled`` is not a bool.
    """

    def __init__(self, labelled: bool) -> None:
        if not isinstance(labelled, bool):
            raise ValueError(f"labelled must be True or False, got {labelled!r}")
        self.labelled = labelled

    def transform(self, results: dict[str, Any]) -> dict[str, Any]:
        """Mark ``results``."""
        results["labelled"] = self.labelled
        return results

    def __repr__(self) -> str:
        return f"SetLabelled(labelled={self.labelled})"
