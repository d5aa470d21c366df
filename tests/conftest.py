"""Shared test configuration: hypothesis profiles (``ci`` is derandomized and smaller)."""

from __future__ import annotations

import os
import sys

import torch
from hypothesis import HealthCheck, settings

from tests.paths import EXAMPLES

# The example trainer's modules (``train``, ``sshpe``) are imported from examples/.
sys.path.insert(0, str(EXAMPLES))

# The suite runs as `pytest -n 2` on 2 cores: intra-op threads would only contend.
torch.set_num_threads(1)

settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
