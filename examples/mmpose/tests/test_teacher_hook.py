"""EMANTeacherHook: mmdet's momentum convention, the refusal of EMAN's, the schedules."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from posemum_mmpose import EMANTeacherHook
from posemum_mmpose.teacher_hook import teacher_schedule

from posemum_aug import EMANTeacher


def runner_with_teacher() -> Any:
    """A stand-in runner whose model has the two things the hook touches."""
    import torch

    student = torch.nn.Linear(2, 2)
    teacher = EMANTeacher(student)
    model = SimpleNamespace(teacher=teacher, update_teacher=lambda: teacher.update(student))
    return SimpleNamespace(model=model, iter=0)


def test_momentum_is_the_students_weight_as_in_mmdet() -> None:
    runner = runner_with_teacher()
    EMANTeacherHook(momentum=0.001).before_train(runner)
    assert runner.model.teacher.momentum == pytest.approx(0.999)
    assert runner.model.update_teacher() == pytest.approx(0.999)


@pytest.mark.parametrize("momentum", [0.999, 0.9, 0.51])
def test_emans_teacher_weight_is_refused_with_the_conversion(momentum: float) -> None:
    with pytest.raises(ValueError, match=f"momentum={1 - momentum:.6g} here"):
        EMANTeacherHook(momentum=momentum)


@pytest.mark.parametrize("momentum", [0.0, -0.1, True, "0.001"])
def test_other_bad_momenta_are_refused(momentum: Any) -> None:
    with pytest.raises(ValueError, match="momentum"):
        EMANTeacherHook(momentum=momentum)


def test_skip_buffer_is_refused() -> None:
    with pytest.raises(ValueError, match="BatchNorm"):
        EMANTeacherHook(skip_buffer=True)


def test_linear_warmup_is_mums_ramp_in_the_students_weight() -> None:
    schedule = teacher_schedule(0.001, dict(type="linear_warmup", warmup_steps=100, start=0.5))
    assert schedule(0, 0.999) == pytest.approx(0.5)
    assert schedule(50, 0.999) == pytest.approx(0.7495)
    assert schedule(100, 0.999) == pytest.approx(0.999)
    runner = runner_with_teacher()
    EMANTeacherHook(0.001, dict(type="linear_warmup", warmup_steps=100)).before_train(runner)
    assert [runner.model.update_teacher() for _ in range(2)] == pytest.approx([0.5, 0.50499])


def test_cosine_ends_with_a_frozen_teacher() -> None:
    schedule = teacher_schedule(0.01, dict(type="cosine", total_steps=10))
    assert schedule(0, 0.99) == pytest.approx(0.99)
    assert schedule(5, 0.99) == pytest.approx(0.995)
    assert schedule(10, 0.99) == 1.0


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (dict(type="exp"), "type"),
        (dict(type="cosine"), "total_steps"),
        (dict(type="cosine", total_steps=0), "total_steps"),
        (dict(type="linear_warmup", warmup=10), "warmup_steps"),
        (dict(type="linear_warmup", start=0.0005), "start"),
        (dict(type="linear_warmup", start=0.99), "student's weight"),
    ],
)
def test_bad_schedules_are_refused(schedule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EMANTeacherHook(momentum=0.001, momentum_schedule=schedule)
