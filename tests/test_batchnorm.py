"""Tests for posemum_aug.batchnorm: passes that normalise on the batch and write nothing."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from torch import nn

from posemum_aug.batchnorm import frozen_running_stats
from tests.strategies import DEVICES, generator, seeds


def net(bn_momentum: float | None = 0.1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4, momentum=bn_momentum),
        nn.ReLU(),
        nn.Conv2d(4, 2, 1),
        nn.BatchNorm2d(2, momentum=bn_momentum),
        nn.Flatten(2),
        nn.BatchNorm1d(2, momentum=bn_momentum),
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bn_momentum", [0.1, None])  # None: cumulative average
@settings(deadline=None, max_examples=15)
@given(seed=seeds)
def test_train_pass_is_training_mode_minus_the_buffer_writes(
    device: str, bn_momentum: float | None, seed: int
) -> None:
    """Output and gradients equal a plain training pass; every buffer stays as it was."""
    torch.manual_seed(seed)
    model = net(bn_momentum).to(device).train()
    for _ in range(2):  # non-trivial running statistics and counters
        model(torch.randn(4, 3, 6, 5, device=device))
    reference = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 3, 6, 5, generator=generator(seed)).to(device)
    with frozen_running_stats(model):
        out = model(x)
    expected = reference(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    out.square().sum().backward()
    expected.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=name)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert any(not torch.equal(v, before[k]) for k, v in reference.state_dict().items())


def test_eval_pass_is_unchanged_and_tracking_comes_back_after_an_error() -> None:
    model = net()
    model(torch.randn(4, 3, 6, 5))
    model.eval()
    x = torch.randn(2, 3, 6, 5)
    expected = model(x)
    with frozen_running_stats(model):
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="boom"), frozen_running_stats(model):
        raise RuntimeError("boom")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert all(m.track_running_stats for m in norms)
    model.train()
    model(x)
    assert all(int(m.num_batches_tracked) == 2 for m in norms)


def test_layers_without_running_statistics_are_left_alone() -> None:
    model = nn.Sequential(
        nn.BatchNorm2d(3, track_running_stats=False), nn.InstanceNorm2d(3, track_running_stats=True)
    )
    with frozen_running_stats(model):
        model(torch.randn(2, 3, 4, 4))
        assert model[1].track_running_stats
    assert not model[0].track_running_stats and model[1].track_running_stats


def test_an_uninitialised_lazy_batchnorm_is_refused_by_name() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.LazyBatchNorm2d())
    with pytest.raises(ValueError, match="lazy BatchNorm initialised"), frozen_running_stats(model):
        pass
    model(torch.randn(2, 3, 4, 4))  # initialised: frozen as any other
    before = model[1].running_mean.clone()
    with frozen_running_stats(model):
        model(torch.randn(2, 3, 4, 4))
    assert torch.equal(model[1].running_mean, before)
