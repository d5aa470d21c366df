"""EMA teachers: EMAN's (whole state, eval mode) and the classic mean teacher (parameters only).

Cai et al. (EMAN, CVPR 2021) average every floating entry of the student's ``state_dict``,
parameters *and* BatchNorm statistics, and run the teacher in eval mode only, so that its
BatchNorm always normalises with running statistics. This module gives the functional core
(:func:`ema_update_` and momentum schedules, pure functions of the step),
:class:`EMANTeacher`, the module that owns the averaged copy, and :class:`MeanTeacher`,
the mean teacher EMAN compares against (Tarvainen & Valpola, 2017): an average of the
parameters only, in the parent's train / eval mode, so that its BatchNorm normalises
training batches with their own statistics. Both run the same update: teacher and student
entries paired by name once, one ``torch._foreach_lerp_`` per (device, dtype) group.

Momentum convention: ``momentum`` is the weight kept on the *teacher*,
``teacher <- momentum * teacher + (1 - momentum) * student``, as in EMAN, MoCo, BYOL, timm
and ``torch.optim.swa_utils.get_ema_multi_avg_fn``. mmdet / mmengine's ``ExpMomentumEMA``
use the opposite convention (their ``momentum=0.0002`` is our ``momentum=0.9998``).
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from posemum_aug._checks import check_positive_int, check_probability

__all__ = [
    "EMANTeacher",
    "MeanTeacher",
    "MomentumSchedule",
    "constant_momentum",
    "cosine_momentum",
    "ema_update_",
    "linear_warmup_momentum",
]

#: A momentum schedule: ``schedule(step, momentum) -> momentum at that step``, where the
#: second argument is the target (base) momentum. Schedules are pure functions of the step,
#: so the step counter and the base momentum are their whole state.
MomentumSchedule = Callable[[int, float], float]


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    return step


def constant_momentum(step: int, momentum: float) -> float:
    """The constant schedule: ``momentum`` at every step (EMAN's default).

    Args:
        step: Update index, ``>= 0``.
        momentum: Weight kept on the teacher, in ``[0, 1]``.

    Returns:
        ``momentum``.

    Raises:
        ValueError: If ``step`` is negative or ``momentum`` lies outside ``[0, 1]``.

    Example:
        >>> constant_momentum(10, 0.999)
        0.999
    """
    _check_step(step)
    return check_probability("momentum", momentum)


def linear_warmup_momentum(
    step: int, momentum: float, *, warmup_steps: int = 2000, start: float = 0.5
) -> float:
    """MUM's warm-up: a linear ramp from ``start`` to ``momentum`` over ``warmup_steps``.

    ``m(step) = start + (momentum - start) * step / warmup_steps`` for
    ``step < warmup_steps`` and ``momentum`` afterwards. With a low momentum early on, the
    teacher follows the fast-improving student closely before it settles into a slow
    average. Pass it as ``schedule=functools.partial(linear_warmup_momentum,
    warmup_steps=...)`` to :class:`EMANTeacher`.

    Args:
        step: Update index, ``>= 0``.
        momentum: Target weight kept on the teacher, in ``[0, 1]``.
        warmup_steps: Length of the ramp, ``>= 1`` (MUM: 2000).
        start: Momentum at step 0, in ``[0, 1]`` (MUM: 0.5).

    Returns:
        The momentum at ``step``.

    Raises:
        ValueError: If ``step`` is negative, ``warmup_steps < 1``, or ``momentum`` or
            ``start`` lies outside ``[0, 1]``.

    Example:
        >>> linear_warmup_momentum(0, 0.999)
        0.5
        >>> linear_warmup_momentum(1000, 0.999)
        0.7495
        >>> linear_warmup_momentum(2000, 0.999)
        0.999
    """
    _check_step(step)
    check_probability("momentum", momentum)
    check_positive_int("warmup_steps", warmup_steps)
    check_probability("start", start)
    if step >= warmup_steps:
        return float(momentum)
    return start + (momentum - start) * step / warmup_steps


def cosine_momentum(step: int, momentum: float, *, total_steps: int) -> float:
    """BYOL's schedule: a cosine increase from ``momentum`` at step 0 to 1 at ``total_steps``.

    ``m(step) = 1 - (1 - momentum) * (cos(pi * step / total_steps) + 1) / 2``, and 1 from
    ``total_steps`` on (the teacher freezes at the end of training).

    Args:
        step: Update index, ``>= 0``.
        momentum: Base weight kept on the teacher at step 0, in ``[0, 1]``.
        total_steps: Number of training steps, ``>= 1``.

    Returns:
        The momentum at ``step``.

    Raises:
        ValueError: If ``step`` is negative, ``total_steps < 1`` or ``momentum`` lies
            outside ``[0, 1]``.

    Example:
        >>> cosine_momentum(0, 0.996, total_steps=100)
        0.996
        >>> round(cosine_momentum(50, 0.996, total_steps=100), 12)
        0.998
        >>> cosine_momentum(100, 0.996, total_steps=100)
        1.0
    """
    _check_step(step)
    check_probability("momentum", momentum)
    check_positive_int("total_steps", total_steps)
    if step >= total_steps:
        return 1.0
    return 1.0 - (1.0 - momentum) * (math.cos(math.pi * step / total_steps) + 1.0) / 2.0


def _unwrap(module: nn.Module) -> nn.Module:
    """The user's module inside ``DistributedDataParallel``, ``DataParallel``, ``torch.compile``."""
    while True:
        if isinstance(module, DistributedDataParallel | DataParallel):
            module = module.module
            continue
        # torch.compile's OptimizedModule keeps the original as ``_orig_mod``; duck-typed so
        # that importing this file does not import torch._dynamo (seconds).
        inner = getattr(module, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner


@dataclass(frozen=True)
class _State:
    """A module's state tensors (parameters and, if collected, persistent buffers, in
    ``state_dict`` order), and the structure that holds them.

    ``owners[i][keys[i]] is tensors[i]``: the dicts the tensors live in, so that a replaced
    tensor (``.to()`` on buffers, ``load_state_dict(assign=True)``) can be detected.
    ``tables`` are the ``_modules``, ``_parameters`` and ``_buffers`` dicts of every
    submodule and ``sizes`` their lengths, ``children`` the ``_modules`` entries (with
    ``child_owners`` and ``child_keys``), so that a replaced, added or removed submodule or
    entry (``model.head = nn.Conv2d(...)``) can be detected too.
    """

    names: list[str]
    tensors: list[Tensor]
    is_buffer: list[bool]
    owners: list[dict[str, Any]]
    keys: list[str]
    tables: list[dict[str, Any]]
    sizes: list[int]
    children: list[nn.Module | None]
    child_owners: list[dict[str, Any]]
    child_keys: list[str]


def _collect_state(module: nn.Module, with_buffers: bool = True) -> _State:
    state = _State([], [], [], [], [], [], [], [], [], [])
    seen: set[int] = set()
    for prefix, mod in module.named_modules():
        for table in (mod._modules, mod._parameters, mod._buffers):
            state.tables.append(table)
            state.sizes.append(len(table))
        for key, child in mod._modules.items():
            state.children.append(child)
            state.child_owners.append(mod._modules)
            state.child_keys.append(key)
        params = [(k, t, False, mod._parameters) for k, t in mod._parameters.items()]
        buffers = [
            (k, t, True, mod._buffers)
            for k, t in mod._buffers.items()
            if with_buffers and k not in mod._non_persistent_buffers_set
        ]
        for key, tensor, is_buffer, owner in params + buffers:
            if tensor is None or id(tensor) in seen:  # unset, or tied to an earlier entry
                continue
            seen.add(id(tensor))
            state.names.append(f"{prefix}.{key}" if prefix else key)
            state.tensors.append(tensor)
            state.is_buffer.append(is_buffer)
            state.owners.append(owner)
            state.keys.append(key)
    return state


def _detached_attributes(module: nn.Module) -> dict[int, Any]:
    """A ``copy.deepcopy`` memo with a detached copy of every tensor that a submodule keeps as
    a plain attribute and that is part of a graph: ``deepcopy`` refuses those, and the old
    ``torch.nn.utils.spectral_norm`` / ``weight_norm`` leave one (the weight they recompute
    before each forward) after a forward with gradients."""
    return {
        id(value): value.detach().clone()
        for mod in module.modules()
        for value in vars(mod).values()
        if isinstance(value, Tensor) and value.grad_fn is not None
    }


def _averaged(tensor: Tensor) -> bool:
    return tensor.is_floating_point() or tensor.is_complex()


_GroupKey = tuple[torch.device, torch.dtype, torch.device, torch.dtype]
_DTYPE = operator.attrgetter("dtype")
_DEVICE = operator.attrgetter("device")


def _group_key(teacher: Tensor, student: Tensor) -> _GroupKey:
    return (teacher.device, teacher.dtype, student.device, student.dtype)


@dataclass
class _Pairing:
    """Teacher and student state matched by name, grouped once for the foreach kernels."""

    student: nn.Module
    #: ``(key, teacher tensors, student tensors)`` per :func:`_group_key`.
    lerp_groups: list[tuple[_GroupKey, list[Tensor], list[Tensor]]]
    copy_teacher: list[Tensor]
    copy_student: list[Tensor]
    #: The student's floating buffers by (device, dtype), for the cross-rank mean.
    student_buffers: list[list[Tensor]]
    #: Every paired tensor (teacher's, then student's) and where it lives:
    #: ``owners[i][keys[i]] is tensors[i]`` while the pairing is current.
    tensors: list[Tensor]
    owners: list[dict[str, Any]]
    keys: list[str]
    #: The structure of both modules (see :class:`_State`): while the pairing is current,
    #: ``len(tables[i]) == sizes[i]`` and ``child_owners[i][child_keys[i]] is children[i]``.
    tables: list[dict[str, Any]]
    sizes: list[int]
    children: list[nn.Module | None]
    child_owners: list[dict[str, Any]]
    child_keys: list[str]
    #: The averaged parameters (teacher's and student's) with their dtypes and devices
    #: when paired: ``Module.to`` swaps a parameter's ``.data`` but keeps the object
    #: (buffers it replaces, which identity catches).
    params: list[Tensor]
    dtypes: list[torch.dtype]
    devices: list[torch.device]

    def is_current(self, student: nn.Module) -> bool:
        """Whether this pairing still holds the live tensors of the teacher and ``student``.

        Identity catches replaced tensors (``.to()`` on buffers, ``load_state_dict(assign=
        True)``) and replaced submodules (whose old tensors still live in the old
        submodule); the sizes of the modules' tables catch added and removed entries; the
        dtype and device of every averaged parameter catch a ``.to()`` that swaps
        parameters' ``.data`` in place, on the whole model or on any part of it.
        """
        if student is not self.student or list(map(len, self.tables)) != self.sizes:
            return False
        try:
            live = map(dict.__getitem__, self.owners, self.keys)
            if not all(map(operator.is_, live, self.tensors)):
                return False
            children = map(dict.__getitem__, self.child_owners, self.child_keys)
            if not all(map(operator.is_, children, self.children)):
                return False
        except KeyError:  # an entry was deleted
            return False
        return (
            list(map(_DTYPE, self.params)) == self.dtypes
            and list(map(_DEVICE, self.params)) == self.devices
        )


def _pair(teacher: nn.Module, student: nn.Module, with_buffers: bool = True) -> _Pairing:
    """Pair the state of ``teacher`` and ``student`` by name: parameters, and buffers if asked.

    Without buffers the pairing holds parameters only: nothing of the buffers is averaged,
    copied, synchronised or checked.
    """
    t_state = _collect_state(teacher, with_buffers)
    s_state = _collect_state(student, with_buffers)
    for i in range(max(len(t_state.names), len(s_state.names))):
        t_name = t_state.names[i] if i < len(t_state.names) else None
        s_name = s_state.names[i] if i < len(s_state.names) else None
        if t_name != s_name:
            raise ValueError(
                f"teacher and student state differ at entry {i}: teacher has {t_name!r}, "
                f"student has {s_name!r}"
            )
    lerp: dict[_GroupKey, tuple[list[Tensor], list[Tensor]]] = {}
    copy_teacher: list[Tensor] = []
    copy_student: list[Tensor] = []
    buffers: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    params: list[Tensor] = []
    pairs = zip(
        t_state.names,
        t_state.tensors,
        s_state.tensors,
        t_state.is_buffer,
        s_state.is_buffer,
        strict=True,
    )
    for name, t, s, t_is_buffer, s_is_buffer in pairs:
        if t.shape != s.shape:
            raise ValueError(
                f"teacher and student shapes differ at {name!r}: teacher {tuple(t.shape)}, "
                f"student {tuple(s.shape)}"
            )
        if _averaged(t) != _averaged(s):
            raise ValueError(
                f"teacher and student dtypes differ in kind at {name!r}: teacher {t.dtype}, "
                f"student {s.dtype}"
            )
        if not _averaged(t):
            copy_teacher.append(t)
            copy_student.append(s)
            continue
        ts, ss = lerp.setdefault(_group_key(t, s), ([], []))
        ts.append(t)
        ss.append(s)
        if s_is_buffer:
            buffers.setdefault((s.device, s.dtype), []).append(s)
        else:
            params.append(s)
        if not t_is_buffer:
            params.append(t)
    return _Pairing(
        student=student,
        lerp_groups=[(key, ts, ss) for key, (ts, ss) in lerp.items()],
        copy_teacher=copy_teacher,
        copy_student=copy_student,
        student_buffers=list(buffers.values()),
        tensors=t_state.tensors + s_state.tensors,
        owners=t_state.owners + s_state.owners,
        keys=t_state.keys + s_state.keys,
        tables=t_state.tables + s_state.tables,
        sizes=t_state.sizes + s_state.sizes,
        children=t_state.children + s_state.children,
        child_owners=t_state.child_owners + s_state.child_owners,
        child_keys=t_state.child_keys + s_state.child_keys,
        params=params,
        dtypes=list(map(_DTYPE, params)),
        devices=list(map(_DEVICE, params)),
    )


@torch.no_grad()
def _apply_ema(pairing: _Pairing, momentum: float) -> None:
    weight = 1.0 - momentum
    for (device, dtype, student_device, student_dtype), ts, ss in pairing.lerp_groups:
        if (student_device, student_dtype) != (device, dtype):
            ss = [s.to(device=device, dtype=dtype) for s in ss]
        torch._foreach_lerp_(ts, ss, weight)
    if pairing.copy_teacher:
        torch._foreach_copy_(pairing.copy_teacher, pairing.copy_student)


@torch.no_grad()
def _all_reduce_mean_(groups: list[list[Tensor]]) -> None:
    """Average each tensor across ranks in place, one collective per (device, dtype) group."""
    world_size = dist.get_world_size()
    for tensors in groups:
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat.div_(world_size)
        chunks = torch.split(flat, [t.numel() for t in tensors])
        torch._foreach_copy_(tensors, [c.view_as(t) for c, t in zip(chunks, tensors, strict=True)])


def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float = 0.999) -> None:
    """EMA of the student's whole state into the teacher, in place and without grad.

    Every floating entry of the teacher's ``state_dict`` (parameters and floating buffers
    such as BatchNorm ``running_mean`` / ``running_var``) becomes
    ``momentum * teacher + (1 - momentum) * student``; every other entry (BatchNorm
    ``num_batches_tracked``) is copied. ``momentum`` is the weight kept on the teacher
    (EMAN's convention; mmdet / mmengine use ``1 - momentum``). Entries are matched by
    name; ``DistributedDataParallel``, ``DataParallel`` and ``torch.compile`` wrappers are
    looked through. This function pairs the tensors on every call: for a training loop use
    :class:`EMANTeacher`, which pairs them once.

    Args:
        teacher: Module updated in place.
        student: Module with the same state names and shapes. Floating entries may differ
            in dtype or device from the teacher's (they are cast to the teacher's).
        momentum: Weight kept on the teacher, in ``[0, 1]``: 1 leaves the teacher
            unchanged, 0 copies the student.

    Raises:
        ValueError: If ``momentum`` lies outside ``[0, 1]``, or if the state names, shapes
            or dtype kinds differ (the message names the first mismatch).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> teacher, student = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
        >>> _ = student(torch.tensor([[0.0, 40.0], [20.0, 80.0]]))
        >>> student.running_mean.tolist()
        [1.0, 6.0]
        >>> ema_update_(teacher, student, momentum=0.5)
        >>> teacher.running_mean.tolist(), int(teacher.num_batches_tracked)
        ([0.5, 3.0], 1)
    """
    check_probability("momentum", momentum)
    _apply_ema(_pair(_unwrap(teacher), _unwrap(student)), momentum)


class _MomentumTeacher(nn.Module):
    """What :class:`EMANTeacher` and :class:`MeanTeacher` share: a gradient-free copy of the
    student, moved towards it in place by one name-paired foreach lerp per (device, dtype)
    group, with the momentum of a schedule and a step counter saved in ``state_dict``.

    A subclass sets :attr:`_with_buffers` (which entries are averaged) and its mode policy.
    """

    #: Whether :meth:`update` averages the floating buffers and copies the integer ones too
    #: (EMAN) or leaves every buffer to the teacher's own forward passes (mean teacher).
    _with_buffers: ClassVar[bool]

    def __init__(
        self,
        student: nn.Module,
        momentum: float,
        schedule: MomentumSchedule | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__()
        check_probability("momentum", momentum)
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype or None, got {dtype}")
        inner = _unwrap(student)
        with torch.inference_mode(False):  # in inference mode, copies would be inference tensors
            self.module = copy.deepcopy(inner, _detached_attributes(inner)).requires_grad_(False)
            if dtype is not None:
                self.module.to(dtype=dtype)
        self.base_momentum = float(momentum)
        self.schedule: MomentumSchedule = constant_momentum if schedule is None else schedule
        self.step = 0
        self._pairing: _Pairing | None = _pair(self.module, inner, self._with_buffers)

    @property
    def momentum(self) -> float:
        """The momentum the next :meth:`update` uses, ``schedule(step, base_momentum)``."""
        return self.schedule(self.step, self.base_momentum)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the teacher network under ``torch.no_grad()``.

        Args:
            *args: Positional inputs of the wrapped network.
            **kwargs: Keyword inputs of the wrapped network.

        Returns:
            The wrapped network's output, without a graph.
        """
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def update(self, student: nn.Module, step: int | None = None) -> float:
        """One EMA step towards ``student``; call it after every ``optimizer.step()``.

        Args:
            student: The student, possibly wrapped in ``DistributedDataParallel``,
                ``DataParallel`` or ``torch.compile``.
            step: Index of this update for the schedule; ``None`` uses :attr:`step`.
                Afterwards :attr:`step` is ``step + 1``.

        Returns:
            The momentum used.

        Raises:
            ValueError: If ``step`` is negative, the schedule returns a value outside
                ``[0, 1]``, or ``student`` is a new module whose averaged entries differ
                from the teacher's in name, shape or dtype kind (the message names the
                first mismatch). ``torch.distributed`` raises one too for an
                :class:`EMANTeacher` with ``sync_buffers=True`` and no initialised process
                group.
        """
        step = self.step if step is None else _check_step(step)
        momentum = check_probability("momentum", self.schedule(step, self.base_momentum))
        inner = _unwrap(student)
        pairing = self._pairing
        if pairing is None or not pairing.is_current(inner):
            pairing = self._pairing = _pair(self.module, inner, self._with_buffers)
        if self._syncs():
            _all_reduce_mean_(pairing.student_buffers)
        _apply_ema(pairing, momentum)
        self.step = step + 1
        return momentum

    def _syncs(self) -> bool:
        """Whether to average the student's floating buffers across ranks before an update."""
        return False

    def get_extra_state(self) -> dict[str, Any]:
        """The schedule's state for ``state_dict``: the step counter and the base momentum."""
        return {"step": self.step, "momentum": self.base_momentum}

    def set_extra_state(self, state: Any) -> None:
        """Restore the step counter and base momentum saved by :meth:`get_extra_state`.

        Args:
            state: The dict returned by :meth:`get_extra_state`.

        Raises:
            ValueError: If the step is not an integer ``>= 0`` or the momentum lies outside
                ``[0, 1]``.
        """
        self.step = _check_step(state["step"])
        self.base_momentum = check_probability("momentum", state["momentum"])

    def __getstate__(self) -> dict[str, Any]:
        # The pairing holds the student: a deep copy or pickle of the teacher must not carry it.
        state = dict(self.__dict__)
        state["_pairing"] = None
        return state

    def extra_repr(self) -> str:
        schedule = getattr(self.schedule, "__name__", repr(self.schedule))
        return f"momentum={self.base_momentum}, schedule={schedule}, step={self.step}"


class EMANTeacher(_MomentumTeacher):
    """EMAN's teacher: an eval-mode exponential moving average of a student's whole state.

    A deep copy of the student with gradients off, **always in eval mode**, whatever a
    parent does: a parent's ``.train()`` leaves it in eval mode, and each forward first
    puts back in eval mode any of its submodules switched to training otherwise (a
    parent's loop over ``modules()`` calling ``.train()`` on every BatchNorm, or
    ``training`` set directly). Its BatchNorm therefore always normalises with the running
    statistics it averages, never with batch statistics, and its forward writes no
    buffer. Call :meth:`update` after every ``optimizer.step()``; it applies
    :func:`ema_update_` with the momentum of the current step, ``momentum`` being the
    weight kept on the teacher (EMAN's convention; mmdet / mmengine use ``1 - momentum``).
    :class:`MeanTeacher` is the teacher EMAN compares against, on the same update: it
    averages the parameters only and follows the parent's train / eval mode.

    Dtypes and devices: the teacher keeps its own, entry by entry. Each floating entry of
    the student is cast to the dtype and device of the teacher's entry before averaging,
    also when the student, or part of it, is converted after the teacher was built (e.g.
    ``student[3].half()``: the teacher's ``3.weight`` stays float32). To average that part
    in the new dtype, convert the teacher the same way (``teacher.module[3].half()``).

    Inference mode: the teacher's state is made of normal tensors even when it is built
    under ``torch.inference_mode()``, so it updates in place outside inference mode.

    Old-style reparametrisations: the weight that ``torch.nn.utils.spectral_norm`` /
    ``weight_norm`` leave on a module after a forward with gradients is part of a graph,
    which ``copy.deepcopy`` refuses; the copy takes it detached (it is recomputed from the
    averaged parameters before each forward anyway).

    Fast path: the teacher and student tensors are paired by name once, grouped by
    (device, dtype), and each update runs one ``torch._foreach_lerp_`` per group and one
    ``torch._foreach_copy_`` for the integer entries. The pairing holds the live tensors,
    so in-place changes (optimizer steps, ``load_state_dict``) need nothing; it is rebuilt
    (and re-checked) when a tensor is replaced (``.to()``, ``load_state_dict(assign=True)``),
    when a submodule of either model is replaced, added or removed (``student.head =
    nn.Conv2d(...)``: averaged from then on if the shapes match, else the update raises),
    when a parameter of either model changes dtype or device (``.to()`` on the whole model
    or on any part of it), or when another student module is passed.

    Distributed training: DDP keeps parameters identical across ranks, but each rank's
    BatchNorm statistics come from its own batches. With ``sync_buffers`` the student's
    floating buffers are averaged across ranks, in place, before each update, so every
    rank holds the same teacher.

    Args:
        student: The model to average. ``DistributedDataParallel``, ``DataParallel`` and
            ``torch.compile`` wrappers are looked through (the teacher copies the inner
            module).
        momentum: Base weight kept on the teacher, in ``[0, 1]`` (EMAN: 0.999).
        schedule: ``schedule(step, momentum)`` gives the momentum of each step, e.g.
            ``functools.partial(linear_warmup_momentum, warmup_steps=2000)`` for MUM's
            ramp or ``functools.partial(cosine_momentum, total_steps=...)`` for BYOL's;
            ``None`` is :func:`constant_momentum`. It must be a pure function of its
            arguments: the checkpoint stores the step and base momentum only.
        sync_buffers: ``"auto"`` averages the student's floating buffers across ranks
            when ``torch.distributed`` is initialised with more than one process;
            ``True`` / ``False`` force it on or off.
        dtype: Floating dtype of the teacher; ``None`` keeps the student's. Use
            ``torch.float32`` for a bf16 / fp16 student: with ``momentum=0.999`` each
            update moves the teacher by 0.1% of the gap, below bf16's resolution (2^-8),
            so a bf16 teacher would stall. A student whose dtype differs is cast per
            update, entry by entry.

    Raises:
        ValueError: If ``momentum`` lies outside ``[0, 1]``, ``sync_buffers`` is not
            ``"auto"``, ``True`` or ``False``, or ``dtype`` is not floating.

    Attributes:
        module: The teacher network (the averaged copy).
        base_momentum: The ``momentum`` argument, passed to ``schedule``.
        schedule: The momentum schedule.
        step: Number of updates so far; the index of the next update.
        sync_buffers: The ``sync_buffers`` argument.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> student = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        >>> teacher = EMANTeacher(student, momentum=0.9)
        >>> _ = nn.ModuleList([student, teacher]).train()
        >>> teacher.module[1].training
        False
        >>> _ = student(torch.arange(8.0).view(4, 2))
        >>> teacher.update(student)
        0.9
        >>> teacher.step, int(teacher.module[1].num_batches_tracked)
        (1, 1)
        >>> for m in nn.ModuleList([student, teacher]).modules():
        ...     if isinstance(m, nn.BatchNorm1d):
        ...         _ = m.train()
        >>> teacher.module[1].training
        True
        >>> teacher(torch.ones(3, 2)).requires_grad
        False
        >>> teacher.module[1].training, int(teacher.module[1].num_batches_tracked)
        (False, 1)
    """

    _with_buffers = True

    def __init__(
        self,
        student: nn.Module,
        momentum: float = 0.999,
        schedule: MomentumSchedule | None = None,
        sync_buffers: bool | Literal["auto"] = "auto",
        dtype: torch.dtype | None = None,
    ) -> None:
        if sync_buffers not in ("auto", True, False):
            raise ValueError(f"sync_buffers must be 'auto', True or False, got {sync_buffers!r}")
        super().__init__(student, momentum, schedule, dtype)
        self.sync_buffers = sync_buffers
        self.train()

    def train(self, mode: bool = True) -> Self:
        """Keep the teacher in eval mode: ``mode`` is ignored (a parent's ``.train()`` calls this).

        Args:
            mode: Ignored.

        Returns:
            ``self``, in eval mode.
        """
        return super().train(False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the teacher in eval mode and under ``torch.no_grad()``.

        Any submodule switched to training since the last call (by a parent's loop over
        ``modules()`` or by setting ``training``) is put back in eval mode first, so
        BatchNorm normalises with the running statistics and writes no buffer; the
        outputs carry no graph.

        Args:
            *args: Positional inputs of the wrapped network.
            **kwargs: Keyword inputs of the wrapped network.

        Returns:
            The wrapped network's output.
        """
        for module in self.modules():
            if module.training:
                module.train(False)
        return super().forward(*args, **kwargs)

    def _syncs(self) -> bool:
        if self.sync_buffers != "auto":
            return self.sync_buffers
        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sync_buffers={self.sync_buffers!r}"


class MeanTeacher(_MomentumTeacher):
    """The classic mean teacher: an EMA of the student's parameters only, in the parent's mode.

    Tarvainen & Valpola (2017), and the "EMA teacher" that EMAN (Cai et al., CVPR 2021)
    compares against. A deep copy of the student with gradients off; :meth:`update` moves
    each *parameter* towards the student's, ``teacher <- momentum * teacher + (1 - momentum)
    * student``. Buffers are not averaged and not copied: the teacher's BatchNorm keeps the
    running statistics of its own forward passes. The teacher follows the parent's
    ``.train()`` / ``.eval()`` like any module (it starts in the mode of the student it
    copies), so during training its BatchNorm normalises each batch with that batch's
    statistics and updates its running statistics from it, which evaluation in eval mode
    then uses. That is the one difference from :class:`EMANTeacher`, which averages the
    BatchNorm statistics too and always runs in eval mode; the update machinery is the same
    (name pairing, wrappers looked through, dtypes and devices kept per entry, schedules,
    checkpoints), and with buffer-free networks the two teachers hold the same weights.

    Shapes are the wrapped network's: for a pose network ``teacher(images)`` maps
    ``(B, 3, H, W)`` crops to ``(B, K, h, w)`` heatmaps, without a graph.

    Fast path: the parameters of teacher and student are paired by name once, grouped by
    (device, dtype), and each update runs one ``torch._foreach_lerp_`` per group. The
    pairing is rebuilt (and re-checked) when a parameter or a submodule is replaced, added or
    removed, when a parameter changes dtype or device, or when another student module is
    passed.

    Distributed training: DDP keeps the student's parameters, and so the teacher's, identical
    across ranks; each rank's teacher BatchNorm statistics come from its own batches, as the
    student's do. Nothing is synchronised.

    Args:
        student: The model to average. ``DistributedDataParallel``, ``DataParallel`` and
            ``torch.compile`` wrappers are looked through (the teacher copies the inner
            module).
        momentum: Base weight kept on the teacher, in ``[0, 1]``.
        schedule: ``schedule(step, momentum)`` gives the momentum of each step (see
            :class:`EMANTeacher`); ``None`` is :func:`constant_momentum`. It must be a pure
            function of its arguments: the checkpoint stores the step and base momentum only.
        dtype: Floating dtype of the teacher; ``None`` keeps the student's (see
            :class:`EMANTeacher` for a bf16 / fp16 student).

    Raises:
        ValueError: If ``momentum`` lies outside ``[0, 1]`` or ``dtype`` is not floating.

    Attributes:
        module: The teacher network (the averaged copy).
        base_momentum: The ``momentum`` argument, passed to ``schedule``.
        schedule: The momentum schedule.
        step: Number of updates so far; the index of the next update.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> student = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        >>> _ = nn.init.zeros_(student[0].weight)
        >>> teacher = MeanTeacher(student, momentum=0.5)
        >>> _ = student(torch.arange(8.0).view(4, 2))  # the student's statistics move
        >>> _ = nn.init.ones_(student[0].weight)
        >>> teacher.update(student)
        0.5
        >>> teacher.module[0].weight.unique().tolist()  # halfway to the student
        [0.5]
        >>> teacher.module[1].running_var.tolist(), int(teacher.module[1].num_batches_tracked)
        ([1.0, 1.0], 0)
        >>> parent = nn.ModuleList([student, teacher]).train()
        >>> out = teacher(torch.arange(6.0).view(3, 2))  # batch statistics, tracked
        >>> out.shape, out.requires_grad, int(teacher.module[1].num_batches_tracked)
        (torch.Size([3, 2]), False, 1)
        >>> _ = parent.eval()  # the teacher follows: running statistics from now on
        >>> teacher.module[1].training
        False
    """

    _with_buffers = False

    def __init__(
        self,
        student: nn.Module,
        momentum: float = 0.999,
        schedule: MomentumSchedule | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(student, momentum, schedule, dtype)
        self.training = self.module.training
