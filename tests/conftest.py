"""Shared fixtures: the backends to run under and the Hypothesis profiles."""

from __future__ import annotations

import importlib.util
import os

import pytest
from hypothesis import HealthCheck, settings

from refmem import xp as rx

settings.register_profile(
    "ci",
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _available(name: str) -> bool:
    try:
        rx.backend(name)
        return True
    except rx.BackendError:
        return False


#: numpy and array_api_strict always; torch and cupy when present.
BACKEND_PARAMS = [
    pytest.param(name, marks=pytest.mark.skipif(not _available(name), reason=f"{name} not available"))
    for name in rx.BACKENDS
]


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request):
    return request.param


@pytest.fixture
def xp(backend_name):
    return rx.backend(backend_name)


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None
