"""Validation of the teacher and the student, as mmdet's ``TeacherStudentValLoop`` does."""

from __future__ import annotations

from typing import Any

from mmengine.model import is_model_wrapper
from mmengine.runner import ValLoop
from mmpose.registry import LOOPS

#: The networks validated, in order; each one's metrics are prefixed with its name.
NETWORKS = ("teacher", "student")


@LOOPS.register_module()
class TeacherStudentValLoop(ValLoop):
    """Run the validation set through the teacher, then the student, and report both.

    Metrics come out as ``teacher/coco/AP``, ``student/coco/AP``, ... (mmdet's names), so a
    ``CheckpointHook`` keeps the best teacher with ``save_best="teacher/coco/AP"``. The
    model's ``semi_test_cfg["predict_on"]`` is switched for each pass and put back.
    Validation losses are not computed (mmpose's estimators return none).

    Raises:
        ValueError: (at run time) if the model has no ``semi_test_cfg``.
    """

    def run(self) -> dict[str, Any]:
        """Validate both networks; returns the prefixed metrics of both."""
        model = (
            self.runner.model.module if is_model_wrapper(self.runner.model) else self.runner.model
        )
        semi_test_cfg = getattr(model, "semi_test_cfg", None)
        if semi_test_cfg is None:
            raise ValueError(
                "TeacherStudentValLoop needs a model with semi_test_cfg, got "
                f"{type(model).__name__}"
            )
        self.runner.call_hook("before_val")
        self.runner.call_hook("before_val_epoch")
        self.runner.model.eval()
        kept = semi_test_cfg["predict_on"]
        metrics: dict[str, Any] = {}
        try:
            for network in NETWORKS:
                semi_test_cfg["predict_on"] = network
                for index, data_batch in enumerate(self.dataloader):
                    self.run_iter(index, data_batch)
                found = self.evaluator.evaluate(len(self.dataloader.dataset))
                metrics.update({f"{network}/{key}": value for key, value in found.items()})
        finally:
            semi_test_cfg["predict_on"] = kept
        self.runner.call_hook("after_val_epoch", metrics=metrics)
        self.runner.call_hook("after_val")
        return metrics
