"""Arrow memory settings of the staged batch readers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from modelwatch import batch


def test_freed_arrow_memory_goes_back_through_jemalloc():
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        pytest.skip("this pyarrow build has no jemalloc")
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        batch.return_freed_memory_promptly()
        assert pa.default_memory_pool().backend_name == "jemalloc"
    finally:
        pa.set_memory_pool(previous)

