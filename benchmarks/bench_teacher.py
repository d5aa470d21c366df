"""Benchmark ``EMANTeacher.update`` against the usual ways of keeping an EMA teacher.

Method: a student and its teacher (same architecture, different weights) on each device;
every method performs the same update, ``teacher <- m * teacher + (1 - m) * student`` on
every floating state entry (parameters and BatchNorm statistics) and a copy of the
integer ones. Times are ``blocked_autorange`` medians (CUDA synchronised), taken in 5
rounds over all methods, of which the median is kept.

- ``per_key``: EMAN's reference loop over both ``state_dict``\\ s,
  ``v_t.copy_(v_t * m + (1 - m) * v_s)`` per floating entry, ``copy_`` for the others.
- ``per_key_lerp``: the same loop with one in-place ``lerp_`` per entry (the best a
  per-key loop can do).
- ``averaged_model``: ``torch.optim.swa_utils.AveragedModel(use_buffers=True,
  multi_avg_fn=get_ema_multi_avg_fn(m))``; note that it averages integer buffers too, with
  truncation, so its ``num_batches_tracked`` stays frozen.
- ``ema_update_``: the functional form, which pairs the tensors on every call.
- ``update``: ``EMANTeacher.update``.
- ``limit``: one ``torch._foreach_lerp_`` per (device, dtype) over lists built beforehand:
  the memory traffic every method must pay, with no pairing, checks or integer copies.

Models: MobileNetV2 (3.5 M parameters, 314 state entries) and a SimpleBaseline pose
network on ResNet-50 (34 M parameters, 338 state entries). ``--quick`` times the small
model only, briefly, on CPU.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch
from _common import median_time, parse_args, print_table, write_json
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from posemum_aug.teacher import EMANTeacher, ema_update_

MOMENTUM = 0.999


def conv_bn(
    c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    )


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [conv_bn(c_in, hidden), nn.ReLU6()]
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6()]
        layers += [conv_bn(hidden, c_out)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v2(num_classes: int = 1000) -> nn.Module:
    """MobileNetV2 (Sandler et al. 2018), width 1.0: 3.5 M parameters."""
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1)]
    settings += [(6, 160, 3, 2), (6, 320, 1, 1)]
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2), nn.ReLU6()]
    c_in = 32
    for expand, c_out, repeats, stride in settings:
        for i in range(repeats):
            layers.append(InvertedResidual(c_in, c_out, stride if i == 0 else 1, expand))
            c_in = c_out
    layers += [conv_bn(c_in, 1280), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    layers += [nn.Linear(1280, num_classes)]
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = 4 * width
        self.body = nn.Sequential(
            conv_bn(c_in, width),
            nn.ReLU(),
            conv_bn(width, width, 3, stride),
            nn.ReLU(),
            conv_bn(width, c_out),
        )
        self.shortcut = conv_bn(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return torch.relu(self.body(x) + skip)


def simple_baseline_r50(joints: int = 17) -> nn.Module:
    """SimpleBaseline (Xiao et al. 2018) on ResNet-50: 34 M parameters."""
    layers: list[nn.Module] = [conv_bn(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    c_in = 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            layers.append(Bottleneck(c_in, width, stride if i == 0 else 1))
            c_in = 4 * width
    for _ in range(3):
        layers += [nn.ConvTranspose2d(c_in, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256)]
        layers += [nn.ReLU()]
        c_in = 256
    layers.append(nn.Conv2d(256, joints, 1))
    return nn.Sequential(*layers)


def make_pair(build: Callable[[], nn.Module], device: str) -> tuple[nn.Module, EMANTeacher]:
    """A student with trained-looking BatchNorm statistics and an older teacher."""
    torch.manual_seed(0)
    student = build().to(device).train()
    with torch.no_grad():
        student(torch.randn(2, 3, 64, 64, device=device))
    teacher = EMANTeacher(student, momentum=MOMENTUM, sync_buffers=False)
    with torch.no_grad():
        for t in teacher.module.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t), alpha=0.01)
            else:
                t.sub_(1)
    return student, teacher


def per_key(teacher: nn.Module, student: nn.Module, m: float) -> None:
    with torch.no_grad():
        s_state = student.state_dict()
        for key, v_t in teacher.state_dict().items():
            v_s = s_state[key]
            if v_t.is_floating_point():
                v_t.copy_(v_t * m + (1.0 - m) * v_s)
            else:
                v_t.copy_(v_s)


def per_key_lerp(teacher: nn.Module, student: nn.Module, m: float) -> None:
    with torch.no_grad():
        s_state = student.state_dict()
        for key, v_t in teacher.state_dict().items():
            if v_t.is_floating_point():
                v_t.lerp_(s_state[key], 1.0 - m)
            else:
                v_t.copy_(s_state[key])


def limit_fn(teacher: nn.Module, student: nn.Module, m: float) -> Callable[[], None]:
    groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]]
    groups = {}
    s_state = student.state_dict()
    for key, v_t in teacher.state_dict().items():
        if v_t.is_floating_point():
            ts, ss = groups.setdefault((v_t.device, v_t.dtype), ([], []))
            ts.append(v_t)
            ss.append(s_state[key])

    def run() -> None:
        for ts, ss in groups.values():
            torch._foreach_lerp_(ts, ss, 1.0 - m)

    return run


def time_model(
    name: str, build: Callable[[], nn.Module], device: str, min_run_time: float, rounds: int
) -> dict[str, Any]:
    # Every method but AveragedModel (which keeps its own copy) updates the same tensors.
    student, eman = make_pair(build, device)
    teacher = eman.module
    averaged = AveragedModel(student, use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(MOMENTUM))
    averaged.update_parameters(student)  # the first call copies; later ones average
    timings = {
        "per_key": lambda: per_key(teacher, student, MOMENTUM),
        "per_key_lerp": lambda: per_key_lerp(teacher, student, MOMENTUM),
        "averaged_model": lambda: averaged.update_parameters(student),
        "ema_update_": lambda: ema_update_(teacher, student, MOMENTUM),
        "update": lambda: eman.update(student),
        "limit": limit_fn(teacher, student, MOMENTUM),
    }
    # Rounds over all methods, then the median per method: a burst of load on a shared
    # machine then spoils one round of every method rather than all of one method.
    per_round = [
        {key: 1e3 * median_time(fn, min_run_time) for key, fn in timings.items()}
        for _ in range(rounds)
    ]
    ms = {key: statistics.median(r[key] for r in per_round) for key in timings}
    row: dict[str, Any] = {
        "device": device,
        "model": name,
        "params_M": round(sum(p.numel() for p in student.parameters()) / 1e6, 2),
        "entries": len(student.state_dict()),
    }
    row |= {f"{key}_ms": value for key, value in ms.items()}
    row["per_key/update"] = ms["per_key"] / ms["update"]
    row["per_key_lerp/update"] = ms["per_key_lerp"] / ms["update"]
    row["averaged/update"] = ms["averaged_model"] / ms["update"]
    row["update/limit"] = ms["update"] / ms["limit"]
    return row


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    models: list[tuple[str, Callable[[], nn.Module]]] = [("mobilenet_v2", mobilenet_v2)]
    if not args.quick:
        models.append(("simplebaseline_r50", simple_baseline_r50))
    rows = [
        time_model(name, build, device, args.min_run_time, rounds=1 if args.quick else 5)
        for device in args.devices
        for name, build in models
    ]
    columns = ["device", "model", "params_M", "entries", "per_key_ms", "per_key_lerp_ms"]
    columns += ["averaged_model_ms", "ema_update__ms", "update_ms", "limit_ms"]
    print_table(rows, columns)
    print()
    ratios = ["per_key/update", "per_key_lerp/update", "averaged/update", "update/limit"]
    print_table(rows, ["device", "model", *ratios])
    print(f"wrote {write_json('teacher', rows, args.out)}")


if __name__ == "__main__":
    main()
