"""BatchNorm running statistics that only clean passes may write.

A semi-supervised step runs the student on inputs that evaluation never sees: mixed tiles,
Joint Cutout boxes, a second affine. In training mode every such pass also moves the
BatchNorm running statistics towards its own batch, and those statistics are what the
student uses in eval mode and what :class:`~posemum_aug.teacher.EMANTeacher` averages and
normalises with. :func:`frozen_running_stats` runs a pass on batch statistics, exactly as
training mode does, but leaves the running statistics and batch counters untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["frozen_running_stats"]


@contextmanager
def frozen_running_stats(module: nn.Module) -> Iterator[None]:
    """Within this context, ``module``'s BatchNorm layers do not update running statistics.

    Each BatchNorm layer of ``module`` (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, lazy
    variants) that tracks running statistics stops tracking them for the duration: in
    training mode it still normalises with the batch's statistics (the forward output
    and its gradient are exactly those of training mode), but ``running_mean``,
    ``running_var`` and ``num_batches_tracked`` are left as they were. In eval mode
    nothing changes (eval mode reads the running statistics, which stay available). On
    exit, every layer tracks again, also after an exception.

    Use it around passes on inputs unlike those of evaluation, e.g. the mixed, cut-out
    hard view of unlabelled data, so that the running statistics (and an EMAN teacher's
    average of them) describe clean inputs only.

    Args:
        module: any module; layers other than BatchNorm are not touched.

    Raises:
        ValueError: if a lazy BatchNorm has not been initialised by a forward pass yet.

    Example:
        >>> import torch
        >>> bn = torch.nn.BatchNorm1d(2)
        >>> with frozen_running_stats(bn):
        ...     out = bn(torch.tensor([[0.0, 1.0], [2.0, 5.0]]))
        >>> out
        tensor([[-1.0000, -1.0000],
                [ 1.0000,  1.0000]], grad_fn=<NativeBatchNormBackward0>)
        >>> bn.running_mean, int(bn.num_batches_tracked), bn.track_running_stats
        (tensor([0., 0.]), 0, True)
    """
    layers = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase)
        and not isinstance(m, nn.modules.instancenorm._InstanceNorm)
        and m.track_running_stats
        and m.running_mean is not None
    ]
    lazy = [m for m in layers if isinstance(m, nn.modules.lazy.LazyModuleMixin)]
    if any(m.has_uninitialized_params() for m in lazy):
        raise ValueError(
            "frozen_running_stats needs every lazy BatchNorm initialised: run one forward "
            "pass of the model first (an uninitialised one has no running statistics)"
        )
    for layer in layers:
        layer.track_running_stats = False
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True
