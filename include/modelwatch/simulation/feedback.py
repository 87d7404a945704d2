"""Ground truth arriving late: label delays, corrections and orphan labels.

For the answered requests of one day:

- 10 % are never labeled;
- of the others, 85 % are labeled after a lognormal delay around 1.7 days
  (most within 1-3 days) and 15 % after 3-10 days; a `label_delay` incident
  multiplies the delays;
- 1 % of the labeled requests first receive a wrong label that a later,
  correct one replaces (the latest `label_timestamp` wins);
- orphan labels (0.3 % of the day's labels) name request ids that no
  prediction has.

Label timestamps are whole seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from modelwatch.simulation.records import request_ids
from modelwatch.simulation.traffic import MS_PER_DAY

NEVER_LABELED = 0.10
LATE_TAIL = 0.15
MAIN_DELAY_DAYS, MAIN_DELAY_SIGMA = 1.7, 0.35
TAIL_DELAY_DAYS = (3.0, 10.0)
CORRECTED = 0.01
ORPHANS = 0.003
ORPHAN_BLOCK = 99
MS_PER_SECOND = 1000


@dataclass
class Labels:
    """Feedback records of one serving day; a request is named by its block and position."""

    block: np.ndarray
    sequence: np.ndarray
    label: np.ndarray
    time_ms: np.ndarray

    def __len__(self) -> int:
        return len(self.time_ms)

    def take(self, rows: np.ndarray) -> Labels:
        return Labels(self.block[rows], self.sequence[rows], self.label[rows], self.time_ms[rows])

    def request_ids(self, day: date) -> pa.Array:
        """The request ids, for labels of requests served on `day`."""
        return request_ids(day, self.block, self.sequence)


@dataclass
class Answered:
    """The answered requests of one day, by block and position in the block: what gets labels."""

    block: np.ndarray
    sequence: np.ndarray
    time_ms: np.ndarray
    truth: np.ndarray

    @classmethod
    def join(cls, parts: list[Answered]) -> Answered:
        return cls(
            *(
                np.concatenate([getattr(p, name) for p in parts])
                for name in ("block", "sequence", "time_ms", "truth")
            )
        )


def delays_ms(rng: np.random.Generator, n: int, factor: float) -> np.ndarray:
    """Label delay per request in ms; -1 for a request that is never labeled."""
    u = rng.random(n)
    main = rng.lognormal(np.log(MAIN_DELAY_DAYS), MAIN_DELAY_SIGMA, n)
    tail = rng.uniform(*TAIL_DELAY_DAYS, n)
    days = np.where(u < NEVER_LABELED + (1 - NEVER_LABELED) * LATE_TAIL, tail, main) * factor
    return np.where(u < NEVER_LABELED, -1, (days * MS_PER_DAY).astype(np.int64))


def wrong_labels(rng: np.random.Generator, truth: np.ndarray, task: str) -> np.ndarray:
    """A mistaken label for each true one: the other class, or a value off by 3-10."""
    if task == "binary_classification":
        return 1.0 - truth
    off = rng.uniform(3, 10, len(truth)) * rng.choice([-1.0, 1.0], len(truth))
    return np.round(np.maximum(truth + off, 0.0), 1)


def _whole_seconds(time_ms: np.ndarray) -> np.ndarray:
    return time_ms - time_ms % MS_PER_SECOND


def _orphans(rng: np.random.Generator, day_start_ms: int, answered: Answered, count: int) -> Labels:
    """Labels for request ids that match no prediction (an unknown block of the day)."""
    served = day_start_ms + rng.integers(0, MS_PER_DAY, count)
    label = rng.permutation(answered.truth)[:count] if len(answered.truth) else np.zeros(count)
    arrival = served + (
        rng.lognormal(np.log(MAIN_DELAY_DAYS), MAIN_DELAY_SIGMA, count) * MS_PER_DAY
    ).astype(np.int64)
    return Labels(np.full(count, ORPHAN_BLOCK), np.arange(count), label, _whole_seconds(arrival))


def day_labels(
    rng: np.random.Generator, day_start_ms: int, answered: Answered, task: str, delay_factor: float
) -> Labels:
    """Every label, correction and orphan caused by the answered requests of one day."""
    delay = delays_ms(rng, len(answered.time_ms), delay_factor)
    labeled = np.flatnonzero(delay >= 0)
    arrival = _whole_seconds(answered.time_ms[labeled] + delay[labeled])
    truth = answered.truth[labeled]
    corrected = np.flatnonzero(rng.random(len(labeled)) < CORRECTED)
    earlier = arrival[corrected] - (rng.uniform(0.25, 2.0, len(corrected)) * MS_PER_DAY).astype(
        np.int64
    )
    earlier = _whole_seconds(np.maximum(earlier, answered.time_ms[labeled][corrected] + 600_000))
    orphans = _orphans(rng, day_start_ms, answered, round(len(labeled) * ORPHANS))
    again = labeled[corrected]
    return Labels(
        np.concatenate([answered.block[labeled], answered.block[again], orphans.block]),
        np.concatenate([answered.sequence[labeled], answered.sequence[again], orphans.sequence]),
        np.concatenate([truth, wrong_labels(rng, truth[corrected], task), orphans.label]),
        np.concatenate([arrival, earlier, orphans.time_ms]),
    )


def by_partition(labels: Labels, first_day_ms: int, days: int) -> dict[int, Labels]:
    """Labels grouped by the day index of their label_timestamp, in time order.

    Labels arriving after the last simulated day are left out: they have not
    arrived yet.
    """
    day_index = (labels.time_ms - first_day_ms) // MS_PER_DAY
    order = np.lexsort((np.arange(len(labels)), labels.time_ms))
    groups: dict[int, Labels] = {}
    for index in np.unique(day_index[(day_index >= 0) & (day_index < days)]):
        rows = order[day_index[order] == index]
        groups[int(index)] = labels.take(rows)
    return groups
