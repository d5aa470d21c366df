"""Pose-MUM and EMAN in your own training loop: a few semi-supervised steps on random data.

Runs on the CPU in a few seconds: ``python docs/examples/own_loop.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from posemum_aug import (
    COCO_17,
    EMANTeacher,
    PoseMUM,
    RandomPoseAffine,
    RandomPoseFlip,
    frozen_running_stats,
    render_heatmaps,
)

STEPS, BATCH, STRIDE = 5, 8, 4
SIZE = (64, 48)  # (H, W) of the crops
HEATMAP = (SIZE[0] // STRIDE, SIZE[1] // STRIDE)  # (h, w) = (16, 12)
K = COCO_17.num_joints
torch.manual_seed(0)  # the data and the initial weights
generator = torch.Generator().manual_seed(0)  # every augmentation and every mix

# 1. A student with BatchNorm that maps (B, 3, 64, 48) crops to (B, K, 16, 12) heatmaps.
student = nn.Sequential(
    nn.Conv2d(3, 32, 3, stride=2, padding=1),  # "0": 32 x 24
    nn.BatchNorm2d(32),  # "1"
    nn.ReLU(),  # "2": a feature-level mixing point
    nn.Conv2d(32, 32, 3, stride=2, padding=1),  # "3": 16 x 12
    nn.BatchNorm2d(32),  # "4"
    nn.ReLU(),  # "5": unmixed here, before the head
    nn.Conv2d(32, K, 1),  # "6": the heatmap head
)
# 2. The EMAN teacher (an eval-mode copy: never mixed) and the mixing hooks on the student.
teacher = EMANTeacher(student, momentum=0.99)
mum = PoseMUM(group_size=4, grid=(4, 4), p=1.0, p_feature=0.5, generator=generator)
handle = mum.attach(student, mix_at=["", "2"], unmix_at="5")
optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
# Modules take their generator at construction and draw every call's parameters from it.
easy_view = RandomPoseAffine.easy_view(generator=generator)
hard_view = RandomPoseAffine.hard_view(generator=generator)
flip = RandomPoseFlip(COCO_17.flip_index, generator=generator)

for step in range(STEPS):
    labelled, unlabelled = torch.rand(2, BATCH, 3, *SIZE)  # stand-ins for a data loader
    keypoints = torch.rand(BATCH, K, 2) * torch.tensor([SIZE[1] - 1, SIZE[0] - 1])
    visibility = torch.ones(BATCH, K)

    # 3. Labelled: easy view, Gaussian targets at stride 4, not mixed.
    easy = easy_view(labelled, keypoints, visibility)
    easy = flip(easy.image, easy.keypoints, easy.visibility)
    targets, weights = render_heatmaps(easy.keypoints / STRIDE, easy.visibility, HEATMAP)
    with mum.paused():
        error = (student(easy.image) - targets).square()
    supervised = (weights[..., None, None] * error).mean()

    # 4. Unlabelled: the teacher labels the easy view; the hard view's affine moves the labels.
    easy = easy_view(unlabelled)
    pseudo = teacher(easy.image)  # (B, K, 16, 12), no graph
    hard = hard_view(easy.image, heatmaps=pseudo)
    with frozen_running_stats(student):  # mixed and unmixed by the hooks
        consistency = (student(hard.image) - hard.heatmaps).square().mean()

    # 5. One optimizer step, then one teacher step.
    loss = supervised + consistency
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    teacher.update(student)
    print(f"step {step}: loss {loss.item():.6f} (consistency {consistency.item():.6f})")

handle.remove()
