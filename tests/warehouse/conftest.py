"""Fixtures of the warehouse tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from .builders import seed


@pytest.fixture
def seeded_engine(warehouse_engine: Engine) -> Iterator[Engine]:
    """A migrated warehouse holding the `seed` history."""
    seed(warehouse_engine)
    yield warehouse_engine
