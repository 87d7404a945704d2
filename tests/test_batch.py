"""Arrow memory settings of the staged batch readers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from modelwatch import batch


@pytest.mark.parametrize("within_ms", [0, 1000])
def test_freed_arrow_memory_goes_back_through_jemalloc(within_ms):
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        pytest.skip("this pyarrow build has no jemalloc")
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        batch.return_freed_memory(within_ms)
        assert pa.default_memory_pool().backend_name == "jemalloc"
    finally:
        pa.set_memory_pool(previous)

