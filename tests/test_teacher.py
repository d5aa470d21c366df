"""Tests for posemum_aug.teacher: EMA exactness, eval mode, schedules, checkpoints, DDP, and
the mean teacher (parameters only, in the parent's mode)."""

from __future__ import annotations

import copy
import functools
import io
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from posemum_aug.teacher import (
    EMANTeacher,
    MeanTeacher,
    constant_momentum,
    cosine_momentum,
    ema_update_,
    linear_warmup_momentum,
)
from tests import _ddp_worker
from tests.strategies import DEVICES, generator, seeds

MOMENTA = st.floats(min_value=0.0, max_value=1.0)


def cnn(seed: int = 0, bn_momentum: float | None = 0.1) -> nn.Sequential:
    """A small CNN with BatchNorm (parameters, float buffers, an integer buffer), random state."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4, momentum=bn_momentum),
        nn.ReLU(),
        nn.Conv2d(4, 2, 1),
        nn.BatchNorm2d(2, momentum=bn_momentum),
    )
    randomize_(model, seed)
    return model


def randomize_(model: nn.Module, seed: int) -> None:
    """Fill every state entry from ``seed``: normal floats (positive variances), small counts."""
    g = generator(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if not value.is_floating_point():
                value.copy_(torch.randint(0, 9, value.shape, generator=g))
            elif key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=g) + 0.5)
            else:
                value.copy_(0.5 * torch.randn(value.shape, generator=g))


def train_step(student: nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    """One SGD step on a fixed random batch: changes parameters and BatchNorm statistics."""
    weight = next(student.parameters())
    x = torch.randn(4, 3, 6, 6, generator=generator(seed)).to(weight)
    optimizer.zero_grad()
    student(x).square().mean().backward()
    optimizer.step()


def reference_ema_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """EMAN's per-key loop: ``m * t + (1 - m) * s`` on floating entries, copy on the others."""
    student_state = student.state_dict()
    with torch.no_grad():
        for key, value in teacher.state_dict().items():
            if value.is_floating_point():
                value.copy_(momentum * value + (1 - momentum) * student_state[key])
            else:
                value.copy_(student_state[key])


def assert_state_equal(actual: nn.Module, expected: nn.Module, exact: bool = False) -> None:
    actual_state, expected_state = actual.state_dict(), expected.state_dict()
    assert list(actual_state) == list(expected_state)
    for key, value in actual_state.items():
        if not isinstance(value, torch.Tensor):  # EMANTeacher's step counter and momentum
            assert value == expected_state[key], key
        elif exact:
            assert torch.equal(value, expected_state[key]), key
        else:
            torch.testing.assert_close(value, expected_state[key], msg=key)


# --- the update -------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("api", ["module", "function"])
def test_update_matches_per_key_reference_loop(device: str, api: str) -> None:
    student = cnn(0).to(device)
    teacher = EMANTeacher(student, momentum=0.9, schedule=linear_warmup_momentum)
    expected = copy.deepcopy(student)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    for step in range(4):
        train_step(student, optimizer, seed=step)
        momentum = linear_warmup_momentum(step, 0.9)
        if api == "module":
            assert teacher.update(student) == momentum
        else:
            ema_update_(teacher.module, student, momentum)
        reference_ema_(expected, student, momentum)
    assert_state_equal(teacher.module, expected)
    assert int(teacher.module[1].num_batches_tracked) == 4
    # The teacher lags the student: the comparison above is not between two copies.
    assert not torch.equal(teacher.module[1].running_var, student[1].running_var)


@given(seed=seeds, momentum=MOMENTA)
def test_update_is_the_ema_formula(seed: int, momentum: float) -> None:
    teacher, student = cnn(seed), cnn(seed + 1)
    expected = copy.deepcopy(teacher)
    reference_ema_(expected, student, momentum)
    ema_update_(teacher, student, momentum)
    assert_state_equal(teacher, expected)


@settings(max_examples=10)
@given(seed=seeds)
def test_momentum_one_keeps_teacher_and_zero_copies_student(seed: int) -> None:
    student = cnn(seed)
    train_step(student, torch.optim.SGD(student.parameters(), lr=0.1), seed)
    kept = EMANTeacher(cnn(seed + 1), momentum=1.0)
    before = copy.deepcopy(kept.module.state_dict())
    kept.update(student)
    for key, value in kept.module.state_dict().items():
        # Floating entries stay; the integer count is always the student's.
        expected = before[key] if value.is_floating_point() else student.state_dict()[key]
        assert torch.equal(value, expected), key
    copied = EMANTeacher(cnn(seed + 1), momentum=0.0)
    copied.update(student)
    assert_state_equal(copied.module, student, exact=True)


def test_tied_weights_are_averaged_once() -> None:
    def tied(seed: int) -> nn.Sequential:
        model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
        model[1].weight = model[0].weight
        randomize_(model, seed)
        return model

    teacher, student = tied(0), tied(1)
    expected = 0.75 * teacher[0].weight.detach() + 0.25 * student[0].weight.detach()
    ema_update_(teacher, student, 0.75)
    torch.testing.assert_close(teacher[0].weight.detach(), expected)
    assert teacher[1].weight is teacher[0].weight


def test_cumulative_batchnorm_sees_the_students_count() -> None:
    """BN with ``momentum=None`` averages with weight 1 / num_batches_tracked."""
    student = cnn(0, bn_momentum=None)
    teacher = EMANTeacher(student, momentum=0.0)  # m = 0: the teacher is the student
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    for step in range(3):
        train_step(student, optimizer, seed=step)
        teacher.update(student)
    bn = teacher.module[1]
    assert int(bn.num_batches_tracked) == 3
    assert_state_equal(teacher.module, student, exact=True)
    # Resumed in train mode (e.g. to initialise a student), the cumulative average goes on
    # with weight 1/4: the count was copied, not averaged or frozen.
    resumed = copy.deepcopy(bn).train()
    x = torch.randn(4, 4, 5, 5, generator=generator(7))
    resumed(x)
    expected = (3 * bn.running_mean + x.mean(dim=(0, 2, 3))) / 4
    torch.testing.assert_close(resumed.running_mean, expected)


# --- the module -------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_teacher_stays_in_eval_mode_and_uses_running_statistics(device: str) -> None:
    student = nn.Sequential(nn.BatchNorm1d(3)).to(device)
    with torch.no_grad():
        student[0].running_mean.copy_(torch.tensor([1.0, -2.0, 3.0]))
        student[0].running_var.copy_(torch.tensor([4.0, 0.25, 1.0]))
    teacher = EMANTeacher(student)
    parent = nn.ModuleDict({"student": student, "teacher": teacher})
    parent.train()
    teacher.train(True)
    assert student.training
    assert not any(m.training for m in teacher.modules())
    x = torch.randn(5, 3, generator=generator(0)).to(device)
    bn = teacher.module[0]
    expected = F.batch_norm(
        x, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias, eps=bn.eps
    )
    before = copy.deepcopy(teacher.module.state_dict())
    torch.testing.assert_close(teacher(x), expected)
    for key, value in teacher.module.state_dict().items():  # batch statistics not tracked
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("trap", ["modules_loop", "training_flag"])
def test_teacher_forward_stays_eval_whatever_a_parent_does(trap: str) -> None:
    """A parent's loop over ``modules()`` or a direct flag reaches the teacher's BatchNorm."""
    student = cnn(0)
    teacher = EMANTeacher(student)
    reference = copy.deepcopy(teacher.module).eval()
    parent = nn.ModuleDict({"student": student, "teacher": teacher})
    if trap == "modules_loop":
        for m in parent.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.train()
    else:
        teacher.training = True
        teacher.module[1].training = True
        teacher.module[4].training = True
    assert teacher.module[1].training and teacher.module[4].training
    x = torch.randn(4, 3, 6, 6, generator=generator(0))
    with torch.no_grad():
        expected = reference(x)
    before = copy.deepcopy(teacher.module.state_dict())
    torch.testing.assert_close(teacher(x), expected)
    for key, value in teacher.module.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not any(m.training for m in teacher.modules())
    assert student.training


def test_teacher_builds_no_graph() -> None:
    student = cnn(0)
    teacher = EMANTeacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    out = teacher(x)
    assert not out.requires_grad and out.grad_fn is None
    loss = (student(x) - out).square().mean()  # a usable target for the student's loss
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    teacher.update(student)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_momentum_property_and_step_counter() -> None:
    schedule = functools.partial(linear_warmup_momentum, warmup_steps=10)
    teacher = EMANTeacher(cnn(0), momentum=0.9, schedule=schedule)
    assert teacher.momentum == 0.5
    assert teacher.update(cnn(1)) == 0.5
    assert teacher.step == 1
    assert teacher.momentum == linear_warmup_momentum(1, 0.9, warmup_steps=10)
    assert teacher.update(cnn(1), step=5) == schedule(5, 0.9)
    assert teacher.step == 6
    with pytest.raises(ValueError, match="step"):
        teacher.update(cnn(1), step=-1)
    bad = EMANTeacher(cnn(0), schedule=lambda step, m: 1.5)
    with pytest.raises(ValueError, match="momentum"):
        bad.update(cnn(1))


def test_checkpoint_round_trip_resumes_bit_for_bit() -> None:
    schedule = functools.partial(linear_warmup_momentum, warmup_steps=4)

    def setup(seed: int, momentum: float) -> tuple[nn.Module, EMANTeacher, torch.optim.Optimizer]:
        student = cnn(seed)
        teacher = EMANTeacher(student, momentum=momentum, schedule=schedule)
        return student, teacher, torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)

    student, teacher, optimizer = setup(0, 0.99)
    for step in range(6):
        if step == 3:
            buffer = io.BytesIO()
            torch.save([student.state_dict(), teacher.state_dict(), optimizer.state_dict()], buffer)
        train_step(student, optimizer, seed=step)
        teacher.update(student)

    # Resume into objects built differently (another init, another base momentum): the
    # checkpoint restores the teacher's weights, step counter and base momentum.
    student2, teacher2, optimizer2 = setup(1, 0.5)
    buffer.seek(0)
    student_state, teacher_state, optimizer_state = torch.load(buffer)
    assert "_extra_state" in teacher_state
    pairing = teacher2._pairing
    student2.load_state_dict(student_state)
    teacher2.load_state_dict(teacher_state)  # copies in place: the cached lists stay live
    optimizer2.load_state_dict(optimizer_state)
    assert (teacher2.step, teacher2.base_momentum) == (3, 0.99)
    assert teacher2.momentum == schedule(3, 0.99)
    for step in range(3, 6):
        train_step(student2, optimizer2, seed=step)
        teacher2.update(student2)
    assert teacher2._pairing is pairing  # never rebuilt, yet exact
    assert teacher2.step == teacher.step == 6
    assert_state_equal(teacher2, teacher, exact=True)


@pytest.mark.parametrize("change", ["assign", "to_dtype", "student_to_dtype", "new_student"])
def test_pairing_follows_replaced_tensors(change: str) -> None:
    student = cnn(0)
    teacher = EMANTeacher(student, momentum=0.5)
    teacher.update(student)  # pairing in use
    if change == "assign":
        teacher.load_state_dict(copy.deepcopy(teacher.state_dict()), assign=True)
    elif change == "to_dtype":
        teacher.to(torch.float64)
    elif change == "student_to_dtype":
        student.to(torch.float64)
    else:
        student = copy.deepcopy(student)
    train_step(student, torch.optim.SGD(student.parameters(), lr=0.1), seed=1)
    expected = copy.deepcopy(teacher.module)
    reference_ema_(expected, student, 0.5)
    teacher.update(student)
    assert_state_equal(teacher.module, expected)


@pytest.mark.parametrize("kind", [EMANTeacher, MeanTeacher])
@pytest.mark.parametrize("where", ["student", "teacher"])
def test_pairing_follows_replaced_submodules(
    kind: type[EMANTeacher | MeanTeacher], where: str
) -> None:
    """A submodule replaced after the pairing (``model[3] = nn.Conv2d(...)``) is paired
    again: with the same shapes it is averaged from then on, with other shapes, or with a
    submodule added or removed, the update names the mismatch. The pairing used to keep
    averaging the old, detached submodule."""
    student = cnn(0)
    teacher = kind(student, momentum=0.5)
    teacher.update(student)  # pairing in use
    model = student if where == "student" else teacher.module
    model[3] = nn.Conv2d(4, 2, 1)
    randomize_(model[3], 2)
    expected = copy.deepcopy(teacher.module)
    reference = reference_ema_ if kind is EMANTeacher else reference_mean_teacher_
    reference(expected, student, 0.5)
    teacher.update(student)
    assert_state_equal(teacher.module, expected)
    model[3] = nn.Conv2d(4, 3, 1)
    with pytest.raises(ValueError, match=r"shapes differ at '3\.weight'"):
        teacher.update(student)
    model[3] = nn.Conv2d(4, 2, 1)
    model.append(nn.Conv2d(2, 2, 1))
    with pytest.raises(ValueError, match=r"'5\.weight'"):
        teacher.update(student)


@pytest.mark.filterwarnings("ignore:.*is deprecated in favor of:FutureWarning")
@pytest.mark.parametrize("kind", [EMANTeacher, MeanTeacher])
@pytest.mark.parametrize("norm", ["spectral_norm", "weight_norm"])
def test_old_style_weight_reparametrisations_after_a_forward(
    kind: type[EMANTeacher | MeanTeacher], norm: str
) -> None:
    """The old ``nn.utils.spectral_norm`` / ``weight_norm`` leave their recomputed weight,
    part of the graph, on the module after a forward with gradients: building a teacher
    then used to fail in ``copy.deepcopy``."""
    wrap = getattr(nn.utils, norm)
    student = nn.Sequential(wrap(nn.Linear(3, 4)), nn.BatchNorm1d(4), wrap(nn.Linear(4, 2)))
    x = torch.randn(6, 3, generator=generator(0))
    student(x).sum().backward()
    teacher = kind(student, momentum=0.0)
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.25)
    teacher.update(student)
    for name, value in student.named_parameters():
        torch.testing.assert_close(teacher.module.get_parameter(name), value.detach())
    out = teacher(x)  # the reparametrised weights are recomputed from the averaged ones
    if kind is EMANTeacher:  # the buffers are copied too: the student's network
        torch.testing.assert_close(out, student.eval()(x).detach())


@pytest.mark.parametrize(
    "change",
    [
        "student_half",
        "teacher_double",
        pytest.param(
            "student_cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ),
    ],
)
def test_partial_conversion_keeps_the_teachers_dtype_and_device(change: str) -> None:
    """Converting one layer swaps its parameters' ``.data``; the other layers keep theirs."""
    student = cnn(0)
    teacher = EMANTeacher(student, momentum=0.5)
    teacher.update(student)  # pairing in use
    if change == "student_half":
        student[3].half()
    elif change == "teacher_double":
        teacher.module[3].double()
    else:
        student[3].cuda()
    randomize_(student, 1)
    expected = copy.deepcopy(teacher.module)
    reference_ema_(expected, copy.deepcopy(student).cpu(), 0.5)
    teacher.update(student)
    conv = teacher.module[3].weight
    assert conv.dtype == (torch.float64 if change == "teacher_double" else torch.float32)
    assert conv.device == torch.device("cpu")
    assert_state_equal(teacher.module, expected)


def test_pairing_follows_a_cast_that_keeps_parameter_objects() -> None:
    """``Module.to`` swaps a parameter's ``.data`` but keeps the object: no buffer changes."""
    student = nn.Linear(3, 2)
    teacher = EMANTeacher(student, momentum=0.5)
    teacher.update(student)
    weight = teacher.module.weight
    teacher.to(torch.float64)
    assert teacher.module.weight is weight
    with torch.no_grad():
        student.weight.add_(1.0)
    expected = copy.deepcopy(teacher.module)
    reference_ema_(expected, student, 0.5)
    teacher.update(student)
    assert_state_equal(teacher.module, expected)


@pytest.mark.parametrize("wrap", ["compile", "data_parallel"])
def test_wrapped_student_is_looked_through(wrap: str) -> None:
    student = cnn(0)
    wrapped = torch.compile(student) if wrap == "compile" else nn.DataParallel(student)
    teacher = EMANTeacher(wrapped, momentum=0.5)
    assert list(teacher.module.state_dict()) == list(student.state_dict())
    train_step(student, torch.optim.SGD(student.parameters(), lr=0.1), seed=0)
    expected = copy.deepcopy(teacher.module)
    reference_ema_(expected, student, 0.5)
    teacher.update(wrapped)
    assert_state_equal(teacher.module, expected)


def test_mismatched_student_raises_naming_the_first_mismatch() -> None:
    teacher = EMANTeacher(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)))
    with pytest.raises(ValueError, match=r"'0\.weight'.*\(3, 2\).*\(4, 2\)"):
        teacher.update(nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 1)))
    with pytest.raises(ValueError, match=r"teacher has '1\.weight', student has '2\.weight'"):
        teacher.update(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))
    with pytest.raises(ValueError, match=r"teacher has 'weight', student has '0\.weight'"):
        ema_update_(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match=r"teacher has None, student has '1\.weight'"):
        ema_update_(nn.Sequential(nn.Linear(2, 2)), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))


def test_fp32_teacher_of_a_bf16_student() -> None:
    student = cnn(0).to(torch.bfloat16)
    with torch.no_grad():
        for p in student.parameters():
            p.fill_(1.0)
    fp32 = EMANTeacher(student, momentum=0.999, dtype=torch.float32)
    bf16 = EMANTeacher(student, momentum=0.999)
    assert fp32.module[0].weight.dtype == torch.float32
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    expected = copy.deepcopy(fp32.module)
    reference_ema_(expected, copy.deepcopy(student).float(), 0.999)
    fp32.update(student)
    bf16.update(student)
    assert_state_equal(fp32.module, expected)
    assert fp32.module[0].weight.unique().item() == pytest.approx(1.001)
    # A 0.1% step is below bf16's resolution near 1 (2^-7): a bf16 teacher does not move.
    assert bf16.module[0].weight.unique().item() == 1.0


def test_copies_do_not_carry_the_student() -> None:
    student = cnn(0)
    teacher = EMANTeacher(student, momentum=0.5)
    clone = copy.deepcopy(teacher)
    assert clone._pairing is None
    expected = copy.deepcopy(teacher.module)
    reference_ema_(expected, student, 0.5)
    clone.update(student)
    assert_state_equal(clone.module, expected)


@pytest.mark.parametrize("built", ["teacher", "student_and_teacher"])
def test_teacher_built_under_inference_mode_updates_outside_it(built: str) -> None:
    """E.g. a teacher built inside an evaluation loop, then trained outside it."""
    with torch.inference_mode(built == "student_and_teacher"):
        student = cnn(0)
    with torch.inference_mode():
        teacher = EMANTeacher(student, momentum=0.75)
    with torch.inference_mode(student[0].weight.is_inference()):
        randomize_(student, 1)  # inference tensors change in inference mode only
    assert not any(value.is_inference() for value in teacher.module.state_dict().values())
    student_state = student.state_dict()
    expected = {
        key: 0.75 * value + 0.25 * student_state[key]
        if value.is_floating_point()
        else student_state[key]
        for key, value in teacher.module.state_dict().items()
    }
    teacher.update(student)
    for key, value in teacher.module.state_dict().items():
        torch.testing.assert_close(value, expected[key], msg=key)
    assert int(teacher.module[1].num_batches_tracked) == int(student[1].num_batches_tracked)


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="momentum"):
        EMANTeacher(cnn(0), momentum=1.5)
    with pytest.raises(ValueError, match="sync_buffers"):
        EMANTeacher(cnn(0), sync_buffers="always")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype"):
        EMANTeacher(cnn(0), dtype=torch.int64)
    with pytest.raises(ValueError, match="momentum"):
        ema_update_(cnn(0), cnn(1), momentum=-0.1)


# --- the mean teacher -------------------------------------------------------------------


def reference_mean_teacher_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """The examples' mean teacher before it moved here: one foreach lerp of the parameters in
    module order, weight ``1 - momentum``; buffers untouched."""
    with torch.no_grad():
        student_params = [p.detach() for p in student.parameters()]
        torch._foreach_lerp_(list(teacher.parameters()), student_params, 1.0 - momentum)


@pytest.mark.parametrize("device", DEVICES)
def test_mean_teacher_is_the_examples_parameter_lerp_bit_for_bit(device: str) -> None:
    schedule = functools.partial(linear_warmup_momentum, warmup_steps=3, start=0.25)
    student = cnn(0).to(device)
    teacher = MeanTeacher(student, momentum=0.9, schedule=schedule)
    reference = copy.deepcopy(student).requires_grad_(False)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    nn.ModuleList([student, teacher, reference]).train()
    for step in range(5):
        train_step(student, optimizer, seed=step)
        x = torch.randn(4, 3, 6, 6, generator=generator(100 + step)).to(device)
        with torch.no_grad():
            expected = reference(x)  # train mode: batch statistics, its own running ones
        assert torch.equal(teacher(x), expected)
        momentum = schedule(step, 0.9)
        assert teacher.update(student) == momentum
        reference_mean_teacher_(reference, student, momentum)
    assert teacher.step == 5
    assert_state_equal(teacher.module, reference, exact=True)  # parameters and buffers
    # Neither side is a copy of the student: the comparison above is between two averages.
    assert not torch.equal(teacher.module[0].weight, student[0].weight)
    assert not torch.equal(teacher.module[1].running_mean, student[1].running_mean)


def test_mean_teacher_averages_parameters_only() -> None:
    student = cnn(0)
    teacher = MeanTeacher(student, momentum=0.75)
    randomize_(student, 1)  # new parameters, BatchNorm statistics and counts
    before = copy.deepcopy(teacher.module.state_dict())
    params = dict(teacher.module.named_parameters())
    teacher.update(student)
    student_state = student.state_dict()
    for key, value in teacher.module.state_dict().items():
        if key in params:
            expected = 0.75 * before[key] + 0.25 * student_state[key]
            torch.testing.assert_close(value, expected, msg=key)
        else:  # running_mean, running_var and num_batches_tracked: neither averaged nor copied
            assert torch.equal(value, before[key]), key
            assert not torch.equal(value, student_state[key]), key
    # Without buffers, the mean teacher and EMAN's hold the same weights.
    mlp = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    mean, eman = MeanTeacher(mlp, momentum=0.6), EMANTeacher(mlp, momentum=0.6)
    randomize_(mlp, 2)
    mean.update(mlp)
    eman.update(mlp)
    assert_state_equal(mean, eman, exact=True)


def test_mean_teacher_follows_the_parents_mode() -> None:
    student = nn.Sequential(nn.BatchNorm1d(3))
    teacher = MeanTeacher(student)
    assert teacher.training and teacher.module[0].training  # built in the student's mode
    assert not MeanTeacher(copy.deepcopy(student).eval()).training
    parent = nn.ModuleDict({"student": student, "teacher": teacher})
    x = torch.randn(5, 3, generator=generator(0)) * 4 + 2
    bn = teacher.module[0]
    parent.train()
    assert all(m.training for m in teacher.modules())
    mean = bn.running_mean.clone()
    out = teacher(x)  # batch statistics, tracked in the teacher's own running statistics
    torch.testing.assert_close(out, F.batch_norm(x, None, None, bn.weight, bn.bias, True))
    assert int(bn.num_batches_tracked) == 1 and not torch.equal(bn.running_mean, mean)
    parent.eval()
    assert not any(m.training for m in teacher.modules())
    before = copy.deepcopy(teacher.module.state_dict())
    out = teacher(x)  # running statistics, nothing written
    expected = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False)
    torch.testing.assert_close(out, expected)
    for key, value in teacher.module.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not out.requires_grad and not any(p.requires_grad for p in teacher.parameters())


def test_mean_teacher_checkpoint_keeps_step_and_momentum() -> None:
    schedule = functools.partial(linear_warmup_momentum, warmup_steps=4)
    student = cnn(0)
    teacher = MeanTeacher(student, momentum=0.99, schedule=schedule)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    for step in range(3):
        train_step(student, optimizer, seed=step)
        teacher.update(student)
    buffer = io.BytesIO()
    torch.save([student.state_dict(), teacher.state_dict()], buffer)
    buffer.seek(0)
    student_state, teacher_state = torch.load(buffer)
    # The layout of the examples' mean teacher, so their checkpoints load.
    assert teacher_state["_extra_state"] == {"step": 3, "momentum": 0.99}
    assert list(teacher_state) == ["_extra_state"] + [f"module.{k}" for k in student_state]
    student2 = cnn(1)
    resumed = MeanTeacher(student2, momentum=0.5, schedule=schedule)
    student2.load_state_dict(student_state)
    resumed.load_state_dict(teacher_state)
    assert (resumed.step, resumed.base_momentum) == (3, 0.99)
    assert resumed.momentum == teacher.momentum == schedule(3, 0.99)
    train_step(student, optimizer, seed=3)
    train_step(student2, torch.optim.SGD(student2.parameters(), lr=0.1), seed=3)
    assert resumed.update(student2) == teacher.update(student)
    assert resumed.step == teacher.step == 4
    assert_state_equal(resumed, teacher, exact=True)
    with pytest.raises(ValueError, match="step must be an integer >= 0, got -1"):
        resumed.set_extra_state({"step": -1, "momentum": 0.9})
    with pytest.raises(ValueError, match=r"momentum must be a probability in \[0, 1\], got 1.5"):
        resumed.set_extra_state({"step": 0, "momentum": 1.5})


@pytest.mark.parametrize("wrap", ["compile", "data_parallel"])
def test_mean_teacher_looks_through_wrappers(wrap: str) -> None:
    student = cnn(0)
    wrapped = torch.compile(student) if wrap == "compile" else nn.DataParallel(student)
    teacher = MeanTeacher(wrapped, momentum=0.5)
    assert list(teacher.module.state_dict()) == list(student.state_dict())
    train_step(student, torch.optim.SGD(student.parameters(), lr=0.1), seed=0)
    expected = copy.deepcopy(teacher.module)
    reference_mean_teacher_(expected, student, 0.5)
    teacher.update(wrapped)
    assert_state_equal(teacher.module, expected, exact=True)


def test_mean_teacher_rejects_bad_arguments() -> None:
    for momentum in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=rf"momentum must be a probability .*{momentum}"):
            MeanTeacher(cnn(0), momentum=momentum)
    with pytest.raises(
        ValueError, match=r"dtype must be a floating dtype or None, got torch\.int64"
    ):
        MeanTeacher(cnn(0), dtype=torch.int64)
    bad = MeanTeacher(cnn(0), schedule=lambda step, m: 1.5)
    with pytest.raises(ValueError, match=r"momentum must be a probability .*1\.5"):
        bad.update(cnn(1))
    assert bad.step == 0
    teacher = MeanTeacher(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)))
    with pytest.raises(ValueError, match=r"'0\.weight'.*\(3, 2\).*\(4, 2\)"):
        teacher.update(nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 1)))
    with pytest.raises(ValueError, match="step must be an integer >= 0, got -1"):
        teacher.update(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)), step=-1)


# --- schedules --------------------------------------------------------------------------


def test_schedule_values_at_known_steps() -> None:
    assert constant_momentum(0, 0.999) == constant_momentum(10**6, 0.999) == 0.999
    ramp = functools.partial(linear_warmup_momentum, warmup_steps=2000)
    assert ramp(0, 0.999) == 0.5
    assert ramp(500, 0.999) == pytest.approx(0.5 + 0.499 / 4)
    assert ramp(1000, 0.999) == pytest.approx(0.7495)
    assert ramp(2000, 0.999) == ramp(10**6, 0.999) == 0.999
    assert linear_warmup_momentum(1, 0.9, warmup_steps=2, start=0.1) == pytest.approx(0.5)
    cosine = functools.partial(cosine_momentum, total_steps=1000)
    assert cosine(0, 0.996) == pytest.approx(0.996)
    assert cosine(500, 0.996) == pytest.approx(0.998)
    assert cosine(250, 0.996) == pytest.approx(1 - 0.004 * (2**-0.5 + 1) / 2)
    assert cosine(1000, 0.996) == cosine(5000, 0.996) == 1.0


@given(
    target=MOMENTA,
    steps=st.integers(1, 50),
    a=st.integers(0, 60),
    b=st.integers(0, 60),
)
def test_schedules_are_monotone_and_bounded(target: float, steps: int, a: int, b: int) -> None:
    lo, hi = min(a, b), max(a, b)
    start = min(0.5, target)
    ramp = functools.partial(linear_warmup_momentum, warmup_steps=steps, start=start)
    cosine = functools.partial(cosine_momentum, total_steps=steps)
    for schedule, first, last in [(ramp, start, target), (cosine, target, 1.0)]:
        assert first - 1e-12 <= schedule(lo, target) <= schedule(hi, target) <= last + 1e-12
        assert schedule(steps, target) == last


@pytest.mark.parametrize(
    "call",
    [
        lambda: constant_momentum(-1, 0.9),
        lambda: linear_warmup_momentum(0, 0.9, warmup_steps=0),
        lambda: linear_warmup_momentum(0, 0.9, start=2.0),
        lambda: cosine_momentum(0, 1.1, total_steps=10),
        lambda: cosine_momentum(0, 0.9, total_steps=0),
    ],
)
def test_schedules_reject_bad_arguments(call: Callable[[], float]) -> None:
    with pytest.raises(ValueError):
        call()


# --- distributed ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_sync_buffers_gives_identical_teachers(tmp_path: Path) -> None:
    """Two gloo processes on 127.0.0.1, each with its own data (see tests/_ddp_worker.py)."""
    mp.spawn(_ddp_worker.run, args=(2, _free_port(), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    synced = [r["synced"] for r in ranks]
    drifting = [r["drifting"] for r in ranks]
    for key, value in synced[0].items():
        if key != "_extra_state":
            assert torch.equal(value, synced[1][key]), key
    assert synced[0]["_extra_state"] == synced[1]["_extra_state"]
    # Without the sync, parameters still agree (DDP averages gradients) but BN stats drift.
    drift = {
        key: (value.double() - drifting[1][key].double()).abs().max().item()
        for key, value in drifting[0].items()
        if key != "_extra_state"
    }
    assert all(d == 0 for key, d in drift.items() if "running" not in key), drift
    assert drift["module.1.running_mean"] > 1e-3 and drift["module.1.running_var"] > 1e-3, drift
    # The last synced update used the cross-rank mean of the student's statistics.
    averages = [(a + b) / 2 for a, b in zip(*(r["student_before"] for r in ranks), strict=True)]
    for rank in ranks:
        after = rank["student_after"]
        for stat, average, student in zip(("mean", "var"), averages, after, strict=True):
            torch.testing.assert_close(student, average)  # averaged in place
            expected = 0.5 * rank["synced_before"][f"1.running_{stat}"] + 0.5 * average
            torch.testing.assert_close(rank["synced"][f"module.1.running_{stat}"], expected)
