"""When requests arrive: daily volume, the hour-of-day curve, and the split of a day into blocks.

A day is cut into time windows of equal expected traffic; each window is one
block, generated, served and written as one file. Blocks are generated from
their own random stream, so a day of any size is produced block by block.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np

MINUTES_PER_DAY = 1440
MS_PER_MINUTE = 60_000
MS_PER_DAY = MINUTES_PER_DAY * MS_PER_MINUTE
MIN_BLOCKS_PER_DAY = 4

#: relative request rate per UTC hour: quiet nights, a lunch and an evening peak
HOURLY_TRAFFIC = np.array(
    [
        0.25,
        0.18,
        0.14,
        0.12,
        0.13,
        0.20,
        0.40,
        0.70,
        0.95,
        1.05,
        1.10,
        1.25,
        1.35,
        1.20,
        1.05,
        1.00,
        1.05,
        1.20,
        1.40,
        1.45,
        1.25,
        0.95,
        0.65,
        0.40,
    ]
)
#: volume factor per weekday, Monday first (mean 1)
WEEKDAY_FACTOR = (1.04, 1.02, 1.00, 1.02, 1.06, 0.94, 0.92)
DAY_TO_DAY_NOISE = 0.015


def _minute_rate() -> np.ndarray:
    """Request rate per minute of the day, interpolated between hour midpoints."""
    hours = np.arange(MINUTES_PER_DAY) / 60.0 - 0.5
    return np.interp(
        hours, np.arange(-1, 25), np.r_[HOURLY_TRAFFIC[-1], HOURLY_TRAFFIC, HOURLY_TRAFFIC[0]]
    )


MINUTE_RATE = _minute_rate()
MINUTE_SHARE = MINUTE_RATE / MINUTE_RATE.sum()


@dataclass(frozen=True)
class Block:
    """One time window of a day: minutes [first_minute, end_minute) and its request count."""

    index: int
    first_minute: int
    end_minute: int
    count: int


def day_start_ms(day: date) -> int:
    """Milliseconds since the epoch at 00:00 UTC of `day`."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def day_volume(rng: np.random.Generator, requests_per_day: int, day: date) -> int:
    """Requests served on `day`: the average volume shaped by weekday, with a little noise."""
    factor = WEEKDAY_FACTOR[day.weekday()] * rng.normal(1.0, DAY_TO_DAY_NOISE)
    return max(0, round(requests_per_day * factor))


def plan_blocks(rng: np.random.Generator, requests: int, block_rows: int) -> list[Block]:
    """Cut a day into windows of equal expected traffic, at most about `block_rows` each."""
    count = max(MIN_BLOCKS_PER_DAY, -(-requests // block_rows))
    cumulative = np.r_[0.0, np.cumsum(MINUTE_SHARE)]
    edges = np.searchsorted(cumulative, np.linspace(0, 1, count + 1), side="left")
    edges[0], edges[-1] = 0, MINUTES_PER_DAY
    edges = np.maximum.accumulate(np.maximum(edges, np.arange(count + 1)))
    shares = np.diff(cumulative[edges])
    counts = rng.multinomial(requests, shares / shares.sum())
    return [Block(i, int(edges[i]), int(edges[i + 1]), int(counts[i])) for i in range(count)]


def draw_times(rng: np.random.Generator, block: Block) -> np.ndarray:
    """Sorted request times of a block, in milliseconds since 00:00 UTC of its day."""
    window = MINUTE_SHARE[block.first_minute : block.end_minute]
    minutes = block.first_minute + rng.choice(
        len(window), size=block.count, p=window / window.sum()
    )
    offsets = rng.integers(0, MS_PER_MINUTE, block.count)
    return np.sort(minutes.astype(np.int64) * MS_PER_MINUTE + offsets)


def load(minute_of_day: np.ndarray) -> np.ndarray:
    """Traffic level at each minute, 0 (quietest) to 1 (busiest)."""
    rate = MINUTE_RATE[minute_of_day]
    return (rate - MINUTE_RATE.min()) / (MINUTE_RATE.max() - MINUTE_RATE.min())
