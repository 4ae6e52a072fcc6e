"""Shared fixtures of the engine tests: a fake upstream and synthetic speech."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .upstream import Upstream, running_upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with running_upstream() as state:
        yield state
